// What the node WHIP clients share: arguments, WHIP requests (RFC 9725, with the bearer
// token when given), Opus packets framed as a 2-byte big-endian length and the bytes.
"use strict";
const fs = require("fs");
const path = require("path");

// the installed version (packages' "exports" hide their package.json from require)
function version(name) {
  const file = path.join(__dirname, "node_modules", name, "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

function parseArgs(argv) {
  const args = { url: argv[2] };
  for (let i = 3; i + 1 < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
  args.seconds = Number(args.seconds || 2);
  args.auth = args.token ? { Authorization: `Bearer ${args.token}` } : {};
  return args;
}

function readPackets(file) {
  const buf = fs.readFileSync(file);
  const out = [];
  for (let off = 0; off + 2 <= buf.length; off += 2 + buf.readUInt16BE(off)) {
    out.push(buf.subarray(off + 2, off + 2 + buf.readUInt16BE(off)));
  }
  return out;
}

function writePackets(file, packets) {
  const parts = [];
  for (const p of packets) {
    const n = Buffer.alloc(2);
    n.writeUInt16BE(p.length);
    parts.push(n, p);
  }
  fs.writeFileSync(file, Buffer.concat(parts));
}

// POST the offer; fills out.status, out.headers, out.location; returns the answer SDP
async function whipPost(args, offer, out) {
  const resp = await fetch(args.url, {
    method: "POST", headers: { "Content-Type": "application/sdp", ...args.auth }, body: offer,
  });
  out.status = resp.status;
  resp.headers.forEach((v, k) => { out.headers[k] = v; });
  const answer = await resp.text();
  if (resp.status !== 201) throw new Error(`WHIP POST answered ${resp.status}: ${answer}`);
  out.location = new URL(out.headers.location, args.url).href;
  return answer;
}

async function whipDelete(args, out) {
  out.delete_status = (await fetch(out.location, { method: "DELETE", headers: args.auth })).status;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(predicate, ms) {
  const deadline = Date.now() + ms;
  while (!predicate() && Date.now() < deadline) await sleep(20);
  return predicate();
}

// Run main(out) and print out as one JSON line; exit 0 when the echo came back
function run(client, version, main) {
  const out = { client, version, ok: false, error: "", status: 0, headers: {}, rtp_sent: 0,
                rtp_received: 0, messages_sent: 0, messages_echoed: 0, delete_status: 0 };
  main(out)
    .then(() => {
      out.ok = out.rtp_received > 0 && out.messages_sent > 0
        && out.messages_echoed === out.messages_sent;
    })
    .catch((err) => { out.error = String(err); })
    .finally(() => {
      console.log(JSON.stringify(out));
      process.exit(out.ok ? 0 : 1);
    });
}

module.exports = { version, parseArgs, readPackets, writePackets, whipPost, whipDelete, sleep, until, run };
