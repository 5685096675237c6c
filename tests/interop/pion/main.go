// A WHIP client on pion (Go: its own ICE, DTLS, SRTP and SCTP), built offline from
// Debian's golang-github-pion-webrtc.v3-dev by scripts/setup.sh. Like the node clients it
// has no codecs: it sends the test's Opus packets and writes the echoed payloads, framed as
// a 2-byte big-endian length and the bytes, and prints one JSON line.
//
//	pion-whip URL --opus-in F --opus-out F [--seconds S] [--cert PEM --key PEM] [--token T]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v3"
	"github.com/pion/webrtc/v3/pkg/media"
)

type result struct {
	Client         string            `json:"client"`
	Version        string            `json:"version"`
	OK             bool              `json:"ok"`
	Error          string            `json:"error"`
	Status         int               `json:"status"`
	Headers        map[string]string `json:"headers"`
	RTPSent        int               `json:"rtp_sent"`
	RTPReceived    int               `json:"rtp_received"`
	MessagesSent   int               `json:"messages_sent"`
	MessagesEchoed int               `json:"messages_echoed"`
	DeleteStatus   int               `json:"delete_status"`
	DTLSCert       string            `json:"dtls_cert"`
}

// version is set at build time from Debian's package version (scripts/setup.sh)
var version = "unknown"

var (
	opusIn  = flag.String("opus-in", "", "Opus packets to send")
	opusOut = flag.String("opus-out", "", "where the echoed payloads go")
	seconds = flag.Float64("seconds", 2, "media duration")
	certPEM = flag.String("cert", "", "RSA certificate (PEM) instead of pion's ECDSA one")
	keyPEM  = flag.String("key", "", "its private key (PEM)")
	token   = flag.String("token", "", "WHIP bearer token")
)

func framed(data []byte) (out [][]byte) {
	for off := 0; off+2 <= len(data); {
		n := int(binary.BigEndian.Uint16(data[off:]))
		out = append(out, data[off+2:off+2+n])
		off += 2 + n
	}
	return out
}

func request(method, target, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/sdp")
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token) // RFC 9725 section 4.5
	}
	return http.DefaultClient.Do(req)
}

func run(whip string, res *result) error {
	config := webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}
	res.DTLSCert = "ecdsa"
	if *certPEM != "" {
		pair, err := tls.LoadX509KeyPair(*certPEM, *keyPEM)
		if err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return err
		}
		config.Certificates = []webrtc.Certificate{webrtc.CertificateFromX509(pair.PrivateKey, leaf)}
		res.DTLSCert = "rsa"
	}
	pc, err := webrtc.NewPeerConnection(config)
	if err != nil {
		return err
	}
	defer pc.Close()

	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	track, err := webrtc.NewTrackLocalStaticSample(opus, "audio", "steer")
	if err != nil {
		return err
	}
	if _, err = pc.AddTransceiverFromTrack(track,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		return err
	}
	var mu sync.Mutex
	var echoed [][]byte
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			echoed = append(echoed, pkt.Payload)
			mu.Unlock()
		}
	})
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	dc, err := pc.CreateDataChannel("echo", nil)
	if err != nil {
		return err
	}
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if strings.HasPrefix(string(m.Data), "pion ") {
			mu.Lock()
			res.MessagesEchoed++
			mu.Unlock()
		}
	})

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err = pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	resp, err := request("POST", whip, pc.LocalDescription().SDP)
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.Status = resp.StatusCode
	for k := range resp.Header {
		res.Headers[strings.ToLower(k)] = resp.Header.Get(k)
	}
	if resp.StatusCode != 201 {
		return fmt.Errorf("WHIP POST answered %d: %s", resp.StatusCode, answer)
	}
	base, _ := url.Parse(whip)
	location, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)})
	if err != nil {
		return err
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("connection %s", pc.ConnectionState())
	}
	select {
	case <-opened:
	case <-time.After(5 * time.Second):
	}

	data, err := os.ReadFile(*opusIn)
	if err != nil {
		return err
	}
	packets := framed(data)
	start := time.Now()
	for i := 0; time.Since(start) < time.Duration(*seconds*float64(time.Second)); i++ {
		if err := track.WriteSample(media.Sample{Data: packets[i%len(packets)], Duration: 20 * time.Millisecond}); err == nil {
			res.RTPSent++
		}
		if i%5 == 0 && res.MessagesSent < 10 && dc.ReadyState() == webrtc.DataChannelStateOpen {
			if dc.SendText(fmt.Sprintf("pion %d", res.MessagesSent)) == nil {
				res.MessagesSent++
			}
		}
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 20 * time.Millisecond)))
	}
	time.Sleep(300 * time.Millisecond) // the last echoes

	mu.Lock()
	res.RTPReceived = len(echoed)
	var out []byte
	for _, p := range echoed {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)))
		out = append(out, p...)
	}
	mu.Unlock()
	if err = os.WriteFile(*opusOut, out, 0o644); err != nil {
		return err
	}
	resp, err = request("DELETE", location.String(), "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	res.DeleteStatus = resp.StatusCode
	return nil
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: pion-whip URL --opus-in F --opus-out F [--seconds S] [--cert PEM --key PEM] [--token T]")
		os.Exit(2)
	}
	whip := os.Args[1]
	if err := flag.CommandLine.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	res := &result{Client: "pion", Version: version, Headers: map[string]string{}}
	if err := run(whip, res); err != nil {
		res.Error = err.Error()
	}
	res.OK = res.Error == "" && res.RTPReceived > 0 && res.MessagesSent > 0 && res.MessagesEchoed == res.MessagesSent
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	if !res.OK {
		os.Exit(1)
	}
}
