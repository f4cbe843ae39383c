package snapshot

import "fmt"

// MarshalBinary encodes p as in an object (docs/format.md "Snapshot objects", pointer):
// for the root record's payload, a share capability and the local state.
func (p Ptr) MarshalBinary() ([]byte, error) {
	e := &enc{}
	if err := e.ptr(&p); err != nil {
		return nil, err
	}
	return e.b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote; anything else is ErrCorrupt.
func (p *Ptr) UnmarshalBinary(b []byte) error {
	d := &dec{b: b}
	q := d.ptr()
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes after a pointer", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("snapshot: pointer: %w", d.err)
	}
	*p = q
	return nil
}
