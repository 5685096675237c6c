// A WHIP session from headless Chromium with a WebAudio tone and a data channel; the test
// evaluates this function in a page of the transceiver's origin and reads what came back.
async (whip, hz, seconds, token) => {
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = { status: 0, headers: {}, rtp_received: 0, echo_hz: 0, echo_db: -200,
                messages_sent: 0, messages_echoed: 0, remote: null, delete_status: 0 };
  const ctx = new AudioContext();
  await ctx.resume();
  const osc = ctx.createOscillator();
  osc.frequency.value = hz;
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.addTransceiver(dst.stream.getAudioTracks()[0], { direction: "sendrecv" });
  const dc = pc.createDataChannel("echo");
  dc.onmessage = (ev) => { if (String(ev.data).startsWith("chromium ")) out.messages_echoed++; };
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  pc.ontrack = (ev) => {
    const stream = new MediaStream([ev.track]);
    // Chromium feeds a remote track into WebAudio only while a media element plays it
    const el = new Audio();
    el.muted = true;
    el.srcObject = stream;
    el.play().catch(() => {});
    ctx.createMediaStreamSource(stream).connect(analyser);
  };
  await pc.setLocalDescription(await pc.createOffer());
  const deadline = Date.now() + 3000;
  while (pc.iceGatheringState !== "complete" && Date.now() < deadline) await sleep(20);
  const resp = await fetch(whip, { method: "POST", headers: { "Content-Type": "application/sdp", ...auth },
                                   body: pc.localDescription.sdp });
  out.status = resp.status;
  resp.headers.forEach((v, k) => { out.headers[k] = v; });
  const answer = await resp.text();
  if (resp.status !== 201) { pc.close(); out.error = answer; return out; }
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  const open = Date.now() + 10000;
  while (dc.readyState !== "open" && Date.now() < open) await sleep(20);
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (dc.readyState === "open" && out.messages_sent < 10) dc.send(`chromium ${out.messages_sent++}`);
    await sleep(100);
  }
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let peak = 1;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  out.echo_hz = (peak * ctx.sampleRate) / analyser.fftSize;
  out.echo_db = bins[peak];
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") out.rtp_received += s.packetsReceived || 0;
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      if (remote) out.remote = `${remote.address}:${remote.port}`;
    }
  });
  out.delete_status = (await fetch(new URL(out.headers.location, whip), { method: "DELETE", headers: auth })).status;
  pc.close();
  ctx.close();
  return out;
}
