"""A WHIP client on GStreamer's webrtcbin (1.22 has no whipsink): a tone out, the echo in.

Run in the lab's client namespace; prints one JSON object and exits 0 when the echo came
back. ``--dtls-role client`` offers ``a=setup:active`` so that webrtcbin, not the
transceiver, opens the DTLS handshake; the default (``actpass``) leaves the server role to
webrtcbin, whose certificate is RSA.

    python -m tests.interop.gst_whip URL [--seconds S] [--hz F] [--dtls-role client|server]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urljoin

import gi
import numpy as np

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

from pyctl.lab.democlient import RATE, dominant_hz  # noqa: E402

SEND = (
    "audiotestsrc is-live=true wave=sine volume=0.3 freq={hz} ! audioconvert ! audioresample"
    " ! opusenc ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,"
    "payload=111,clock-rate=48000 ! webrtcbin name=w bundle-policy=max-bundle"
)
RECV = (
    "rtpopusdepay ! opusdec ! audioconvert ! audioresample"
    " ! audio/x-raw,format=S16LE,channels=1,rate=48000 ! appsink name=sink emit-signals=true"
)


class Client:
    def __init__(
        self, url: str, hz: float, seconds: float, dtls_role: str, token: str | None
    ) -> None:
        self.url, self.seconds, self.dtls_role = url, seconds, dtls_role
        # RFC 9725 section 4.5: a bearer token, on every request
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(SEND.format(hz=hz))
        self.w = self.pipe.get_by_name("w")
        self.res: dict[str, Any] = {
            "client": "gstreamer-webrtcbin",
            "version": Gst.version_string(),
            "ok": False,
            "error": "",
            "tone_hz": hz,
            "dtls_role": dtls_role,
            "rtp_received": 0,
            "echo_hz": 0.0,
            "echo_rms": 0.0,
            "messages_sent": 0,
            "messages_echoed": 0,
            "headers": {},
        }
        self.samples: list[np.ndarray] = []
        self.location: str | None = None
        self.channel: Any = None
        self.started = time.monotonic()
        self.w.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.w.connect("pad-added", self.on_pad_added)
        self.w.connect("notify::ice-gathering-state", self.on_gathering)
        self.w.connect("notify::connection-state", self.on_connection_state)

    # -- signaling
    def on_negotiation_needed(self, _w: Any) -> None:
        if self.channel is not None:  # creating the channel asks again: one offer only
            return
        self.channel = self.w.emit("create-data-channel", "echo", None)
        self.channel.connect("on-open", self.on_open)
        self.channel.connect("on-message-string", self.on_message)
        GLib.idle_add(self.create_offer)

    def create_offer(self) -> bool:
        promise = Gst.Promise.new()
        self.w.emit("create-offer", None, promise)
        promise.wait()
        reply = promise.get_reply()  # keep it: the offer below points into it
        offer = reply.get_value("offer")
        self.w.emit("set-local-description", offer, None)
        return False

    def on_gathering(self, *_a: Any) -> None:
        if self.w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        sdp = self.w.get_property("local-description").sdp.as_text()
        # the relay steers UDP only (reading webrtcbin's ice-agent property from Python to
        # turn TCP off drops a reference too many in 1.22 and crashes)
        sdp = "".join(ln + "\r\n" for ln in sdp.splitlines() if " tcp " not in ln)
        if self.dtls_role == "client":
            sdp = sdp.replace("a=setup:actpass", "a=setup:active")
        req = urllib.request.Request(
            self.url, data=sdp.encode(), headers={"Content-Type": "application/sdp", **self.auth}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answer = r.read().decode()
                self.res["status"] = r.status
                self.res["headers"] = dict(r.headers)
                self.location = urljoin(self.url, r.headers["Location"])
        except urllib.error.HTTPError as e:
            return self.fail(f"WHIP POST answered {e.code}: {e.read().decode().strip()}")
        _, msg = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.w.emit("set-remote-description", desc, None)
        return False

    # -- media and data
    def on_pad_added(self, _w: Any, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        pad.add_probe(Gst.PadProbeType.BUFFER, self.count_rtp)
        recv = Gst.parse_bin_from_description(RECV, True)
        self.pipe.add(recv)
        recv.sync_state_with_parent()
        recv.get_by_name("sink").connect("new-sample", self.on_sample)
        pad.link(recv.get_static_pad("sink"))

    def count_rtp(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self.res["rtp_received"] += 1
        return Gst.PadProbeReturn.OK

    def on_sample(self, sink: Any) -> Gst.FlowReturn:
        buf = sink.emit("pull-sample").get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            self.samples.append(np.frombuffer(bytes(info.data), dtype=np.int16).astype(float))
            buf.unmap(info)
        return Gst.FlowReturn.OK

    def on_open(self, channel: Any) -> None:
        GLib.timeout_add(100, self.send_message)

    def send_message(self) -> bool:
        self.channel.emit("send-string", f"gst {self.res['messages_sent']}")
        self.res["messages_sent"] += 1
        return self.res["messages_sent"] < 10

    def on_message(self, _channel: Any, message: str) -> None:
        if message.startswith("gst "):
            self.res["messages_echoed"] += 1

    def on_connection_state(self, *_a: Any) -> None:
        state = self.w.get_property("connection-state")
        self.res["connection_state"] = state.value_nick
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.res["setup_ms"] = (time.monotonic() - self.started) * 1000
            GLib.timeout_add(int(self.seconds * 1000), self.finish)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.fail("connection failed")

    # -- the end
    def fail(self, error: str) -> bool:
        self.res["error"] = error
        self.loop.quit()
        return False

    def finish(self) -> bool:
        if self.samples:
            pcm = np.concatenate(self.samples)[-RATE:]
            self.res["echo_hz"] = dominant_hz(pcm)
            self.res["echo_rms"] = float(np.sqrt(np.mean(pcm**2)))
        self.loop.quit()
        return False

    def run(self, timeout: float) -> dict[str, Any]:
        GLib.timeout_add(int(timeout * 1000), self.fail, "timed out")
        self.pipe.set_state(Gst.State.PLAYING)
        self.loop.run()
        if self.location is not None:
            req = urllib.request.Request(self.location, method="DELETE", headers=self.auth)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    self.res["delete_status"] = r.status
            except urllib.error.HTTPError as e:
                self.res["delete_status"] = e.code
        self.pipe.set_state(Gst.State.NULL)
        r = self.res
        r["ok"] = (
            not r["error"]
            and r["rtp_received"] > 0
            and abs(r["echo_hz"] - r["tone_hz"]) < 15
            and r["messages_echoed"] == r["messages_sent"] > 0
        )
        return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--hz", type=float, default=523.0)
    ap.add_argument("--dtls-role", choices=["server", "client"], default="server")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--token", default=None, help="WHIP bearer token")
    args = ap.parse_args()
    Gst.init(None)
    client = Client(args.url, args.hz, args.seconds, args.dtls_role, args.token)
    res = client.run(args.timeout)
    print(json.dumps(res), flush=True)
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
