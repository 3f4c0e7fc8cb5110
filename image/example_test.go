package image_test

import (
	"fmt"

	"github.com/skiffcri/skiff/image"
)

func ExampleUserFromConfig() {
	for _, u := range []string{"1002", "www-data", "1002:1003", "nobody:nogroup", ""} {
		uid, name := image.UserFromConfig(u)
		if uid != nil {
			fmt.Printf("%q -> uid %d\n", u, *uid)
		} else {
			fmt.Printf("%q -> username %q\n", u, name)
		}
	}
	// Output:
	// "1002" -> uid 1002
	// "www-data" -> username "www-data"
	// "1002:1003" -> uid 1002
	// "nobody:nogroup" -> username "nobody"
	// "" -> username ""
}
