"""ICE over TCP on the VIP (RFC 6544 passive, RFC 4571 framing), ended on the relay host.

XDP cannot steer TCP before its handshake, so a small userspace component beside the XDP
program accepts clients' TCP connections on VIP:443 (`steerctl icetcp`), routes each by the
ufrag in its first framed Binding Request with the data plane's own rules (route.py: the
pinned steer_sessions, then sealed ufrags under the pinned seal keys) and carries every
frame as a UDP datagram to the same transceiver session socket the UDP path reaches
(relay.py). The transceiver learns the component's UDP address as a peer-reflexive
candidate and needs no TCP of its own. It is a process of its own so that restarting it,
or a flood of connections against it, never touches the daemon or the UDP path.
"""
