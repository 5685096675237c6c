// Minimal WHIP client (RFC 9725) for the steer transceiver: microphone in, echo out.
// Tests drive it headless through window.steer: start(), stop(), state, stats().
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // ?token=T: the WHIP bearer token (RFC 9725 section 4.5), sent on POST and DELETE
  const auth = params.get("token") ? { Authorization: `Bearer ${params.get("token")}` } : {};

  const steer = {
    state: "new",          // new | connecting | connected | failed | closed | error
    error: null,
    resource: null,        // absolute URL of the WHIP session (from Location)
    pc: null,
    // getStats() digest: inbound audio packets and the nominated pair's remote address.
    async stats() {
      const out = { inboundAudioPackets: 0, remoteAddress: null, remotePort: null,
                    localCandidateType: null, remoteCandidateType: null, pairState: null };
      if (!steer.pc) return out;
      const report = await steer.pc.getStats();
      let pair = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") out.inboundAudioPackets += s.packetsReceived || 0;
        if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
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
        if (local) out.localCandidateType = local.candidateType;
      }
      return out;
    },
    start,
    stop,
  };
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
      await pc.setRemoteDescription({ type: "answer", sdp: body });
    } catch (err) {
      setState("error", err);
      throw err;
    }
    $("start").disabled = true;
    $("stop").disabled = false;
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
