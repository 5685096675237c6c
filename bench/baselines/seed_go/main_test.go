package main

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// request is a STUN message of type typ with one USERNAME attribute; hdrLen and attrLen,
// when >= 0, replace the header's and the attribute's length fields (to lie).
func request(typ uint16, username string, hdrLen, attrLen int) []byte {
	v := []byte(username)
	al := len(v)
	if attrLen >= 0 {
		al = attrLen
	}
	attr := binary.BigEndian.AppendUint16(nil, 0x0006)
	attr = binary.BigEndian.AppendUint16(attr, uint16(al))
	attr = append(attr, v...)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	hl := len(attr)
	if hdrLen >= 0 {
		hl = hdrLen
	}
	p := binary.BigEndian.AppendUint16(nil, typ)
	p = binary.BigEndian.AppendUint16(p, uint16(hl))
	p = append(p, stunMagic...)
	p = append(p, []byte("txid-0123456")...)
	return append(p, attr...)
}

func TestStunUfrag(t *testing.T) {
	good := request(0x0001, "ufragA:peer", -1, -1)
	for _, tc := range []struct {
		name string
		p    []byte
		want string // "" : none
	}{
		{"a Binding Request", good, "ufragA"},
		{"no ':'", request(0x0001, "ufragA", -1, -1), ""},
		{"empty ufrag", request(0x0001, ":peer", -1, -1), ""},
		{"a success response", request(0x0101, "ufragA:peer", -1, -1), ""},
		{"header length past the datagram", request(0x0001, "ufragA:peer", 64, -1), ""},
		{"attribute past the message", request(0x0001, "ufragA:peer", -1, 200), ""},
		{"attribute cut before its ':'", request(0x0001, "ufragA:peer", -1, 6), ""},
		{"USERNAME after the header's end", request(0x0001, "ufragA:peer", 0, -1), ""},
		{"19 bytes", good[:19], ""},
		{"no magic cookie", append(append(append([]byte{}, good[:4]...), 0, 0, 0, 0), good[8:]...), ""},
	} {
		if got := string(stunUfrag(tc.p)); got != tc.want {
			t.Errorf("%s: ufrag %q, want %q", tc.name, got, tc.want)
		}
	}
}

func udp(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// Once a flow is open, a packet each way allocates nothing in the process (the relay's
// goroutines included): what lets seed_go run with the collector off.
func TestForwardingAllocatesNothing(t *testing.T) {
	vip, backend, client := udp(t), udp(t), udp(t)
	w := &worker{
		vip:      vip,
		backends: map[string]*net.UDPAddr{"ufragA": backend.LocalAddr().(*net.UDPAddr)},
		flows:    map[netip.AddrPort]*net.UDPConn{},
	}
	go w.fromClients()
	to := vip.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, mtu)
	if _, err := client.WriteToUDPAddrPort(request(0x0001, "ufragA:peer", -1, -1), to); err != nil {
		t.Fatal(err)
	}
	_, via, err := backend.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	pkt := []byte("rtp-shaped payload")
	roundTrip := func() {
		_, _ = client.WriteToUDPAddrPort(pkt, to)
		n, _, _ := backend.ReadFromUDPAddrPort(buf)
		if !bytes.Equal(buf[:n], pkt) {
			t.Fatalf("the transceiver got %q", buf[:n])
		}
		_, _ = backend.WriteToUDPAddrPort(pkt, via)
		n, from, _ := client.ReadFromUDPAddrPort(buf)
		if !bytes.Equal(buf[:n], pkt) || from != to {
			t.Fatalf("the client got %q from %v, not from the VIP %v", buf[:n], from, to)
		}
	}
	roundTrip() // the upstream reader's goroutine started, its buffer allocated
	if allocs := testing.AllocsPerRun(2000, roundTrip); allocs != 0 {
		t.Fatalf("%.2f allocations per round trip", allocs)
	}
}
