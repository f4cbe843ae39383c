package crypt_test

import (
	"fmt"

	"github.com/scatterfs/scatter/crypt"
)

func Example() {
	secret, err := crypt.NewSecret()
	if err != nil {
		panic(err)
	}
	keys := secret.Keys()

	plain := []byte("some file content")
	id := keys.ChunkID(plain)
	sealed := keys.Seal(nil, id, plain)
	opened, err := keys.Open(nil, id, sealed)
	fmt.Println(string(opened), err, len(sealed) == crypt.SealedSize(len(plain)))

	// The recovery key gives back the same secret, hence the same keys.
	again, err := crypt.ParseRecoveryKey(secret.RecoveryKey())
	fmt.Println(err, again.Keys().ChunkID(plain) == id)
	// Output:
	// some file content <nil> true
	// <nil> true
}
