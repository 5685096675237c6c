// A WHIP client on werift (WebRTC in TypeScript, its own ICE, DTLS, SRTP and SCTP).
// werift has no codecs: it sends the Opus packets the test encoded (--opus-in, each packet
// as a 2-byte big-endian length and the bytes), writes the echoed payloads it receives in
// the same framing (--opus-out) for the test to decode, and prints one JSON line.
//   node werift_whip.js URL --opus-in F --opus-out F [--seconds S] [--cert PEM --key PEM]
//                       [--token T]
"use strict";
const fs = require("fs");
const { RTCPeerConnection, RTCRtpCodecParameters, MediaStreamTrack, RtpPacket, RtpHeader } =
  require("werift");

const args = Object.fromEntries(
  process.argv.slice(3).reduce((acc, v, i, a) => (i % 2 ? acc : [...acc, [a[i], a[i + 1]]]), []),
);
const url = process.argv[2];
const seconds = Number(args["--seconds"] || 2);
const auth = args["--token"] ? { Authorization: `Bearer ${args["--token"]}` } : {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readPackets(file) {
  const buf = fs.readFileSync(file);
  const out = [];
  for (let off = 0; off + 2 <= buf.length; ) {
    const n = buf.readUInt16BE(off);
    out.push(buf.subarray(off + 2, off + 2 + n));
    off += 2 + n;
  }
  return out;
}

async function main() {
  const out = { client: "werift", version: JSON.parse(fs.readFileSync(require.resolve("werift").replace(/lib\/.*$/, "package.json"))).version, ok: false,
                error: "", status: 0, headers: {}, rtp_sent: 0, rtp_received: 0,
                messages_sent: 0, messages_echoed: 0, delete_status: 0, dtls_cert: "ecdsa" };
  const config = {
    bundlePolicy: "max-bundle",
    codecs: { audio: [new RTCRtpCodecParameters({ mimeType: "audio/opus", clockRate: 48000,
                                                  channels: 2 })] },
  };
  if (args["--cert"]) {
    // an RSA certificate, as GStreamer's webrtcbin holds: werift is then an RSA DTLS server
    config.dtls = { keys: { certPem: fs.readFileSync(args["--cert"], "utf8"),
                            keyPem: fs.readFileSync(args["--key"], "utf8"),
                            signatureHash: { signature: 1, hash: 4 } } };
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
  const gathered = Date.now() + 5000;
  while (pc.iceGatheringState !== "complete" && Date.now() < gathered) await sleep(20);
  const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp", ...auth },
                                  body: pc.localDescription.sdp });
  out.status = resp.status;
  resp.headers.forEach((v, k) => { out.headers[k] = v; });
  const answer = await resp.text();
  if (resp.status !== 201) throw new Error(`WHIP POST answered ${resp.status}: ${answer}`);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  const connected = Date.now() + 10000;
  while (pc.connectionState !== "connected" && Date.now() < connected) await sleep(20);
  if (pc.connectionState !== "connected") throw new Error(`connection ${pc.connectionState}`);
  while (dc.readyState !== "open" && Date.now() < connected) await sleep(20);

  const packets = readPackets(args["--opus-in"]);
  const start = Date.now();
  let seq = Math.floor(Math.random() * 60000);
  for (let i = 0; Date.now() - start < seconds * 1000; i++) {
    const header = new RtpHeader({ sequenceNumber: seq++ & 0xffff, timestamp: (i * 960) >>> 0,
                                   payloadType: 111, marker: i === 0 });
    track.writeRtp(new RtpPacket(header, packets[i % packets.length]));
    out.rtp_sent++;
    if (i % 5 === 0 && dc.readyState === "open" && out.messages_sent < 10) {
      dc.send(`werift ${out.messages_sent++}`);
    }
    await sleep(Math.max(0, start + (i + 1) * 20 - Date.now()));
  }
  await sleep(300);  // the last echoes
  out.rtp_received = echoed.length;
  const framed = echoed.map((p) => { const n = Buffer.alloc(2); n.writeUInt16BE(p.length); return [n, p]; });
  fs.writeFileSync(args["--opus-out"], Buffer.concat(framed.flat()));
  const location = new URL(out.headers.location, url);
  out.delete_status = (await fetch(location, { method: "DELETE", headers: auth })).status;
  await pc.close();
  out.ok = out.rtp_received > 0 && out.messages_echoed === out.messages_sent && out.messages_sent > 0;
  return out;
}

main()
  .then((out) => { console.log(JSON.stringify(out)); process.exit(out.ok ? 0 : 1); })
  .catch((err) => { console.log(JSON.stringify({ ok: false, error: String(err) })); process.exit(1); });
