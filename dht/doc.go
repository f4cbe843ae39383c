// Package dht is scatter's peer layer on libp2p: a host (TCP and QUIC, TLS before Noise,
// yamux) with fixed resource limits, a private Kademlia DHT (protocol prefix "/scatter")
// through which peers find each other, the fragment protocol that moves fragments between
// a client and a donor's store, and Network, the implementation of swarm.Network that the
// data path uses.
//
// A Node is one peer: New builds its host and DHT from a Config, persisting the peer
// identity in the data directory, bootstraps from configured peers only (there are no
// public bootstrap peers), keeps round-trip estimates of connected peers fresh with a
// supervised ping loop, and in server mode (donors) serves the DHT and its fragment store.
// NewNetwork puts a swarm.Network on a Node.
//
// Everything that reaches beyond the configured listen addresses (NAT port mapping, hole
// punching, relays, AutoNAT service, mDNS) is off unless a Config asks for it.
package dht
