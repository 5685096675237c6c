// A WHIP client on libdatachannel (C++, the stack behind OBS's WHIP output) through its
// node binding node-datachannel. Like werift it has no codecs: it sends the test's Opus
// packets as RTP it builds itself and writes the echoed payloads (framing: common.js).
//   node datachannel_whip.js URL --opus-in F --opus-out F [--seconds S] [--cert PEM --key PEM]
//                            [--token T]
"use strict";
const ndc = require("node-datachannel");
const c = require("./common");

const args = c.parseArgs(process.argv);
const SSRC = 0x51ee7;

function rtp(seq, ts, payload, marker) {
  const h = Buffer.alloc(12);
  h[0] = 0x80;
  h[1] = (marker ? 0x80 : 0) | 111;
  h.writeUInt16BE(seq & 0xffff, 2);
  h.writeUInt32BE(ts >>> 0, 4);
  h.writeUInt32BE(SSRC, 8);
  return Buffer.concat([h, payload]);
}

function payloadOf(packet) {
  if (packet.length < 12 || (packet[1] & 0x7f) !== 111) return null;  // RTCP, other types
  let off = 12 + 4 * (packet[0] & 0x0f);
  if (packet[0] & 0x10) off += 4 + 4 * packet.readUInt16BE(off + 2);  // header extension
  const pad = packet[0] & 0x20 ? packet[packet.length - 1] : 0;
  return packet.subarray(off, packet.length - pad);
}

c.run("node-datachannel (libdatachannel)", c.version("node-datachannel"), async (out) => {
  const config = { iceServers: [] };
  out.dtls_cert = "ecdsa";
  if (args.cert) {
    Object.assign(config, { certificatePemFile: args.cert, keyPemFile: args.key });
    out.dtls_cert = "rsa";
  }
  const pc = new ndc.PeerConnection("whip", config);
  let state = "new";
  let gathered = false;
  pc.onStateChange((s) => { state = s; });
  pc.onGatheringStateChange((s) => { gathered = s === "complete"; });
  const audio = new ndc.Audio("0", "SendRecv");
  audio.addOpusCodec(111);
  audio.addSSRC(SSRC, "steer", "steer-stream", "steer-track");
  const track = pc.addTrack(audio);
  const echoed = [];
  track.onMessage((msg) => { const p = payloadOf(Buffer.from(msg)); if (p) echoed.push(p); });
  const dc = pc.createDataChannel("echo");
  let open = false;
  dc.onOpen(() => { open = true; });
  dc.onMessage((m) => { if (String(m).startsWith("datachannel ")) out.messages_echoed++; });

  pc.setLocalDescription();
  await c.until(() => gathered, 5000);
  const answer = await c.whipPost(args, pc.localDescription().sdp, out);
  pc.setRemoteDescription(answer, "answer");
  if (!(await c.until(() => state === "connected", 10000))) throw new Error(`state ${state}`);
  await c.until(() => open && track.isOpen(), 5000);

  const packets = c.readPackets(args["opus-in"]);
  const start = Date.now();
  const seq = Math.floor(Math.random() * 60000);
  for (let i = 0; Date.now() - start < args.seconds * 1000; i++) {
    if (track.sendMessageBinary(rtp(seq + i, i * 960, packets[i % packets.length], i === 0))) {
      out.rtp_sent++;
    }
    if (i % 5 === 0 && open && out.messages_sent < 10) {
      dc.sendMessage(`datachannel ${out.messages_sent++}`);
    }
    await c.sleep(Math.max(0, start + (i + 1) * 20 - Date.now()));
  }
  await c.sleep(300);  // the last echoes
  out.rtp_received = echoed.length;
  c.writePackets(args["opus-out"], echoed);
  await c.whipDelete(args, out);
  dc.close();
  pc.close();
  ndc.cleanup();
});
