package auth

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"math/big"

	"github.com/schollz/pake/v3"
)

// pakeMessage is the public part of a pake/v3 message. Only the point of the
// sender's role is used: X from role 0, Y from role 1.
type pakeMessage struct {
	Role *int     `json:"Role"`
	X    *big.Int `json:"Xᵤ,omitempty"`
	XV   *big.Int `json:"Xᵥ,omitempty"`
	Y    *big.Int `json:"Yᵤ,omitempty"`
	YV   *big.Int `json:"Yᵥ,omitempty"`
}

// update checks a peer's PAKE message and feeds a canonical copy of it to p.
// pake/v3 panics on messages whose points are missing (e.g. {"Role":0} sent
// to role 1), so nothing reaches it unchecked, and Update runs under recover.
func update(p *pake.Pake, msg []byte, fromRole int) (err error) {
	canonical, err := checkMessage(msg, fromRole)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = protocolErrorf("pake rejected the message: %v", r)
		}
	}()
	if err := p.Update(canonical); err != nil {
		return protocolErrorf("pake rejected the message: %v", err)
	}
	return nil
}

// checkMessage decodes a PAKE message from fromRole, checks that it carries a
// valid P-256 point for that role, and returns it re-encoded with only the
// fields pake needs.
func checkMessage(msg []byte, fromRole int) ([]byte, error) {
	var m pakeMessage
	dec := json.NewDecoder(bytes.NewReader(msg))
	if err := dec.Decode(&m); err != nil {
		return nil, protocolErrorf("malformed pake message: %v", err)
	}
	if dec.More() {
		return nil, protocolErrorf("malformed pake message: trailing data")
	}
	if m.Role == nil || *m.Role != fromRole {
		return nil, protocolErrorf("pake message from the wrong role")
	}
	out := pakeMessage{Role: m.Role}
	x, y := m.X, m.XV
	if fromRole == 1 {
		x, y = m.Y, m.YV
	}
	if !onCurve(x, y) {
		return nil, protocolErrorf("pake message carries no valid P-256 point")
	}
	if fromRole == 0 {
		out.X, out.XV = x, y
	} else {
		out.Y, out.YV = x, y
	}
	return json.Marshal(out)
}

// onCurve reports whether (x, y) is a point of P-256 other than infinity,
// with both coordinates in range: crypto/ecdh checks the uncompressed
// encoding 04 ‖ x ‖ y.
func onCurve(x, y *big.Int) bool {
	if x == nil || y == nil || x.Sign() < 0 || y.Sign() < 0 || x.BitLen() > 256 || y.BitLen() > 256 {
		return false
	}
	point := make([]byte, 65)
	point[0] = 4
	x.FillBytes(point[1:33])
	y.FillBytes(point[33:])
	_, err := ecdh.P256().NewPublicKey(point)
	return err == nil
}
