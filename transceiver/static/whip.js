// Minimal WHIP client (RFC 9725) for the steer transceiver: microphone in, echo out.
// Tests drive it headless through window.steer: start(), stop(), restartIce(), state, stats(),
// and with ?dc a data channel: echo(text) resolves with the next message it receives.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // ?token=T: the WHIP bearer token (RFC 9725 section 4.5), sent on POST, PATCH and DELETE
  const auth = params.get("token") ? { Authorization: `Bearer ${params.get("token")}` } : {};

  const steer = {
    state: "new",          // new | connecting | connected | failed | closed | error
    error: null,
    resource: null,        // absolute URL of the WHIP session (from Location)
    etag: null,            // the ICE session (RFC 9725 section 4.3.1): changes on a restart
    restarts: 0,
    pc: null,
    // getStats() digest: inbound audio packets and the nominated pair's remote address.
    async stats() {
      const out = { inboundAudioPackets: 0, outboundAudioPackets: 0, remoteAddress: null,
                    remotePort: null, localCandidateType: null, remoteCandidateType: null,
                    pairState: null, dtlsState: null, remoteFingerprint: null,
                    iceLocalUfrag: null, pairChanges: null, transportId: null,
                    localProtocol: null, localTcpType: null };
      if (!steer.pc) return out;
      const report = await steer.pc.getStats();
      let pair = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") out.inboundAudioPackets += s.packetsReceived || 0;
        if (s.type === "outbound-rtp" && s.kind === "audio") out.outboundAudioPackets += s.packetsSent || 0;
        if (s.type === "transport") {
          // the DTLS session: a restart must keep it (same transport, state, peer certificate)
          out.transportId = s.id;
          out.dtlsState = s.dtlsState || null;
          out.iceLocalUfrag = s.iceLocalUsernameFragment || null;
          out.pairChanges = s.selectedCandidatePairChanges ?? null;
          const cert = s.remoteCertificateId && report.get(s.remoteCertificateId);
          if (cert) out.remoteFingerprint = cert.fingerprint;
          if (s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
        }
      });
      if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
      if (pair) {
        const remote = report.get(pair.remoteCandidateId);
        const local = report.get(pair.localCandidateId);
        out.pairState = pair.state;
        if (remote) {
          out.remoteAddress = remote.address || remote.ip || null;
          out.remotePort = remote.port;
          out.remoteCandidateType = remote.candidateType;
        }
        if (local) {
          out.localCandidateType = local.candidateType;
          out.localProtocol = local.protocol || null;  // udp, or tcp over ICE-TCP
          out.localTcpType = local.tcpType || null;
        }
      }
      return out;
    },
    start,
    stop,
    restartIce,
    echo,
    dc: null,
  };

  // Send `text` on the data channel; resolves with the next message received on it.
  function echo(text) {
    const dc = steer.dc;
    if (!dc || dc.readyState !== "open") return Promise.reject(new Error("no open data channel"));
    return new Promise((resolve) => {
      dc.addEventListener("message", (ev) => resolve(ev.data), { once: true });
      dc.send(text);
    });
  }
  window.steer = steer;

  function setState(state, error) {
    steer.state = state;
    if (error) steer.error = String(error);
    $("state").textContent = state;
    $("error").textContent = steer.error || "-";
  }

  // Non-trickle WHIP: the offer goes out with every candidate gathered.
  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 2000);  // a stuck gatherer must not block the session
    });
  }

  // ?source=tone sends a WebAudio tone instead of the microphone. Without a media
  // permission Chromium hides its host addresses behind mDNS (.local) candidates, which
  // is how most browsers look to the relay: the client's own check opens the path.
  async function audioSource() {
    if (params.get("source") === "tone") {
      const ctx = new AudioContext();
      const osc = ctx.createOscillator();
      const dst = ctx.createMediaStreamDestination();
      osc.frequency.value = Number(params.get("hz") || 440);
      osc.connect(dst);
      osc.start();
      return dst.stream;
    }
    return navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  }

  async function start(endpoint) {
    endpoint = new URL(endpoint || $("endpoint").value, location.href).href;
    setState("connecting");
    try {
      const stream = await audioSource();
      const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
      steer.pc = pc;
      pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendrecv", streams: [stream] });
      if (params.has("dc")) steer.dc = pc.createDataChannel("steer");
      pc.ontrack = (ev) => { $("echo").srcObject = ev.streams[0] || new MediaStream([ev.track]); };
      pc.onconnectionstatechange = () => {
        const s = pc.connectionState;
        if (s === "connected" || s === "failed" || s === "closed") setState(s);
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const resp = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", ...auth },
        body: pc.localDescription.sdp,
      });
      const body = await resp.text();
      if (resp.status !== 201) throw new Error(`WHIP POST: ${resp.status} ${body.trim()}`);
      steer.resource = new URL(resp.headers.get("Location"), endpoint).href;
      steer.etag = resp.headers.get("ETag");
      await pc.setRemoteDescription({ type: "answer", sdp: body });
    } catch (err) {
      setState("error", err);
      throw err;
    }
    $("start").disabled = true;
    $("stop").disabled = false;
  }

  // The offer's ICE part as an SDP fragment (RFC 8840): the first m= section only, as
  // max-bundle gathers there (RFC 9725 section 4.3.2).
  function sdpFrag(sdp) {
    const lines = sdp.split(/\r?\n/);
    const first = lines.findIndex((l) => l.startsWith("m="));
    const next = lines.findIndex((l, i) => i > first && l.startsWith("m="));
    const media = lines.slice(first, next < 0 ? undefined : next);
    const ice = (l) => /^a=(mid|ice-ufrag|ice-pwd|candidate|end-of-candidates)/.test(l);
    return [media[0], ...media.filter(ice), "a=end-of-candidates"].join("\r\n") + "\r\n";
  }

  // ICE restart over WHIP PATCH (RFC 9725 section 4.3.2): new credentials both ways, the
  // same DTLS session. Resolves with the new ufrag and timings (ms, performance.now()):
  // gathering, the PATCH round trip, and when the PATCH went out.
  async function restartIce() {
    const pc = steer.pc;
    const answer = pc.currentRemoteDescription.sdp;
    const start = performance.now();
    pc.restartIce();
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const t0 = performance.now();
    const resp = await fetch(steer.resource, {
      method: "PATCH",
      headers: { "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*", ...auth },
      body: sdpFrag(pc.localDescription.sdp),
    });
    const body = await resp.text();
    const patchMs = performance.now() - t0;
    if (resp.status !== 200) throw new Error(`WHIP PATCH: ${resp.status} ${body.trim()}`);
    steer.etag = resp.headers.get("ETag");
    const get = (name) => (body.match(new RegExp(`^a=${name}:(.*)$`, "m")) || [])[1].trim();
    const ufrag = get("ice-ufrag"), pwd = get("ice-pwd");
    const sdp = answer.replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${ufrag}`)
                      .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${pwd}`);
    await pc.setRemoteDescription({ type: "answer", sdp });
    steer.restarts += 1;
    return { ufrag, gatherMs: t0 - start, patchMs, patchAt: t0 };
  }

  async function stop() {
    if (steer.resource) {
      await fetch(steer.resource, { method: "DELETE", headers: auth }).catch(() => {});
      steer.resource = null;
    }
    if (steer.pc) steer.pc.close();
    setState("closed");
    $("start").disabled = false;
    $("stop").disabled = true;
  }

  setInterval(async () => {
    const s = await steer.stats();
    $("packets").textContent = s.inboundAudioPackets;
    $("remote").textContent = s.remoteAddress ? `${s.remoteAddress}:${s.remotePort} (${s.remoteCandidateType})` : "-";
  }, 1000);

  $("endpoint").value = params.get("whip") || new URL("whip", location.href).href;
  $("start").onclick = () => start().catch(() => {});
  $("stop").onclick = () => stop();
  if (params.has("autostart")) start().catch(() => {});
})();
