package control

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// shareFake is a Handler that manages shares in memory.
type shareFake struct {
	fake
	shares []Share
}

func (f *shareFake) Share(ctx context.Context, path string) (*Share, error) {
	if path == "missing" {
		return nil, errors.New("no such directory")
	}
	s := Share{ID: "id" + path, Path: path, Cap: "scatter-cap1:" + path}
	f.shares = append(f.shares, s)
	return &s, nil
}

func (f *shareFake) Shares(ctx context.Context) ([]Share, error) { return f.shares, nil }

func (f *shareFake) Revoke(ctx context.Context, id string) (*Share, error) {
	for i := range f.shares {
		if f.shares[i].ID == id {
			f.shares[i].Revoked = true
			return &f.shares[i], nil
		}
	}
	return nil, errors.New("no such share")
}

func TestShares(t *testing.T) {
	_, path := listen(t, &shareFake{})
	c := NewClient(path)
	ctx := context.Background()
	if list, err := c.Shares(ctx); err != nil || len(list) != 0 || list == nil {
		t.Fatalf("no shares yet: %#v, %v", list, err)
	}
	s, err := c.Share(ctx, "a/b")
	if err != nil || s.Path != "a/b" || s.Cap != "scatter-cap1:a/b" {
		t.Fatalf("share: %+v, %v", s, err)
	}
	if _, err := c.Share(ctx, "missing"); err == nil || err.Error() != "no such directory" {
		t.Fatalf("share of a missing directory: %v", err)
	}
	if s, err := c.Revoke(ctx, "ida/b"); err != nil || !s.Revoked {
		t.Fatalf("revoke: %+v, %v", s, err)
	}
	if _, err := c.Revoke(ctx, "nope"); err == nil {
		t.Fatal("revoke of an unknown share succeeded")
	}
	if list, err := c.Shares(ctx); err != nil || len(list) != 1 || !list[0].Revoked {
		t.Fatalf("list: %+v, %v", list, err)
	}
}

// A mount whose handler does not manage shares says so.
func TestSharesUnsupported(t *testing.T) {
	_, path := listen(t, &fake{})
	if _, err := NewClient(path).Shares(context.Background()); err == nil || !strings.Contains(err.Error(), "shares") {
		t.Fatalf("shares on a plain handler: %v", err)
	}
}

func TestParseShareRequests(t *testing.T) {
	for _, ok := range []string{`{"v":1,"op":"share","path":"a"}`, `{"v":1,"op":"shares"}`, `{"v":1,"op":"revoke","id":"x"}`} {
		if _, err := ParseRequest([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{
		`{"v":1,"op":"share"}`, `{"v":1,"op":"share","path":""}`, `{"v":1,"op":"status","path":"a"}`,
		`{"v":1,"op":"revoke"}`, `{"v":1,"op":"shares","id":"x"}`, `{"v":1,"op":"share","path":"a","id":"x"}`,
	} {
		if _, err := ParseRequest([]byte(bad)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", bad, err)
		}
	}
}
