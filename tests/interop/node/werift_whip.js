// A WHIP client on werift (WebRTC in TypeScript, its own ICE, DTLS, SRTP and SCTP).
// werift has no codecs: it sends the Opus packets the test encoded (--opus-in) and writes
// the echoed payloads (--opus-out) for the test to decode (framing: common.js).
//   node werift_whip.js URL --opus-in F --opus-out F [--seconds S] [--cert PEM --key PEM]
//                       [--token T]
"use strict";
const fs = require("fs");
const { RTCPeerConnection, RTCRtpCodecParameters, MediaStreamTrack, RtpPacket, RtpHeader } =
  require("werift");
const c = require("./common");

const args = c.parseArgs(process.argv);

c.run("werift", c.version("werift"), async (out) => {
  const config = {
    bundlePolicy: "max-bundle",
    codecs: { audio: [new RTCRtpCodecParameters({ mimeType: "audio/opus", clockRate: 48000,
                                                  channels: 2 })] },
  };
  out.dtls_cert = "ecdsa";
  if (args.cert) {
    // an RSA certificate, as GStreamer's webrtcbin holds: werift is then an RSA DTLS server
    config.dtls = { keys: { certPem: fs.readFileSync(args.cert, "utf8"),
                            keyPem: fs.readFileSync(args.key, "utf8"),
                            signatureHash: { signature: 1, hash: 4 } } };  // rsa, sha256
    out.dtls_cert = "rsa";
  }
  const pc = new RTCPeerConnection(config);
  const track = new MediaStreamTrack({ kind: "audio" });
  const transceiver = pc.addTransceiver(track, { direction: "sendrecv" });
  const echoed = [];
  transceiver.onTrack.subscribe((remote) => {
    remote.onReceiveRtp.subscribe((rtp) => { echoed.push(Buffer.from(rtp.payload)); });
  });
  const dc = pc.createDataChannel("echo");
  dc.onmessage = (ev) => { if (String(ev.data).startsWith("werift ")) out.messages_echoed++; };

  await pc.setLocalDescription(await pc.createOffer());
  await c.until(() => pc.iceGatheringState === "complete", 5000);
  const answer = await c.whipPost(args, pc.localDescription.sdp, out);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  if (!(await c.until(() => pc.connectionState === "connected", 10000))) {
    throw new Error(`connection ${pc.connectionState}`);
  }
  await c.until(() => dc.readyState === "open", 5000);

  const packets = c.readPackets(args["opus-in"]);
  const start = Date.now();
  let seq = Math.floor(Math.random() * 60000);
  for (let i = 0; Date.now() - start < args.seconds * 1000; i++) {
    const header = new RtpHeader({ sequenceNumber: seq++ & 0xffff, timestamp: (i * 960) >>> 0,
                                   payloadType: 111, marker: i === 0 });
    track.writeRtp(new RtpPacket(header, packets[i % packets.length]));
    out.rtp_sent++;
    if (i % 5 === 0 && dc.readyState === "open" && out.messages_sent < 10) {
      dc.send(`werift ${out.messages_sent++}`);
    }
    await c.sleep(Math.max(0, start + (i + 1) * 20 - Date.now()));
  }
  await c.sleep(300);  // the last echoes
  out.rtp_received = echoed.length;
  c.writePackets(args["opus-out"], echoed);
  await c.whipDelete(args, out);
  await pc.close();
});
