package meta

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// fill sets every field of v, recursively, to a value that is not the zero
// value, with every slice and map holding one element.
func fill(t testing.TB, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(t, s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k)
		fill(t, e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			fill(t, v.Field(i))
		}
	default:
		t.Fatalf("fill: no rule for a %s (%s): teach fill and clone about it", v.Kind(), v.Type())
	}
}

// shared reports the fields of a and b, recursively, that point at the same
// memory.
func shared(path string, a, b reflect.Value) []string {
	switch a.Kind() {
	case reflect.Slice, reflect.Map, reflect.Pointer:
		if !a.IsNil() && a.UnsafePointer() == b.UnsafePointer() {
			return []string{path}
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeOf(time.Time{}) {
			return nil
		}
		var out []string
		for i := range a.NumField() {
			out = append(out, shared(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))...)
		}
		return out
	}
	return nil
}

func TestCloneIsDeep(t *testing.T) {
	var c Container
	fill(t, reflect.ValueOf(&c).Elem())
	if s := shared("Container", reflect.ValueOf(c), reflect.ValueOf(*c.clone())); len(s) > 0 {
		t.Errorf("Container.clone shares %v with the original", s)
	}
	if !reflect.DeepEqual(c.clone(), &c) {
		t.Errorf("Container.clone differs from the original")
	}
	var p Pod
	fill(t, reflect.ValueOf(&p).Elem())
	if s := shared("Pod", reflect.ValueOf(p), reflect.ValueOf(*p.clone())); len(s) > 0 {
		t.Errorf("Pod.clone shares %v with the original", s)
	}
	if !reflect.DeepEqual(p.clone(), &p) {
		t.Errorf("Pod.clone differs from the original")
	}
}

func TestListReusesDecoding(t *testing.T) {
	s, db := newTestStore(t)
	for _, id := range []string{"c1", "c2"} {
		if err := s.PutContainer(&Container{ID: id, Labels: map[string]string{"app": id}, Config: json.RawMessage(`{"metadata":{"name":"` + id + `"}}`)}); err != nil {
			t.Fatal(err)
		}
	}
	byID := func() map[string]*Container {
		t.Helper()
		all, err := s.Containers()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*Container{}
		for _, c := range all {
			m[c.ID] = c
		}
		return m
	}
	first := byID()
	if len(first) != 2 || first["c1"].Labels["app"] != "c1" {
		t.Fatalf("first list = %v", first)
	}
	cached := s.containers.byID["c1"].v
	// What a caller changes in its copy stays its own.
	first["c1"].Labels["app"] = "changed"
	first["c1"].ExitSeen = true
	second := byID()
	if second["c1"].Labels["app"] != "c1" || second["c1"].ExitSeen {
		t.Errorf("a caller's change reached the next list: %+v", second["c1"])
	}
	if second["c1"] == first["c1"] {
		t.Errorf("two lists returned the same record")
	}
	if s.containers.byID["c1"].v != cached {
		t.Errorf("an unchanged record was decoded again")
	}
	// A record written again is decoded again.
	if err := s.PutContainer(&Container{ID: "c1", ExitSeen: true}); err != nil {
		t.Fatal(err)
	}
	if third := byID(); !third["c1"].ExitSeen || third["c1"].Labels != nil {
		t.Errorf("rewritten record listed as %+v", third["c1"])
	}
	// A deleted one is gone, from the list and from the cache.
	if err := s.DeleteContainer("c2"); err != nil {
		t.Fatal(err)
	}
	if fourth := byID(); len(fourth) != 1 {
		t.Errorf("after delete, list = %v", fourth)
	}
	if n := len(s.containers.byID); n != 1 {
		t.Errorf("cache keeps %d records, want 1", n)
	}
	// A record that does not decode fails the list, every time.
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(containersBucket).Put([]byte("bad"), []byte("{")) }); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Containers(); err == nil {
			t.Error("list with an undecodable record succeeded")
		}
	}
}

func BenchmarkContainers(b *testing.B) {
	s, _ := newTestStore(b)
	var c Container
	for i := range 100 {
		fill(b, reflect.ValueOf(&c).Elem())
		c.ID = "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		c.Config = json.RawMessage(`{"metadata":{"name":"app","attempt":1},"image":{"image":"registry.k8s.io/e2e-test-images/busybox:1.36"},"command":["sh","-c","sleep 3600"],"labels":{"io.kubernetes.pod.name":"pod","io.kubernetes.container.name":"app"}}`)
		c.Resources = json.RawMessage(`{}`)
		if err := s.PutContainer(&c); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("unchanged", func(b *testing.B) {
		for range b.N {
			if _, err := s.Containers(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			s.containers = newDecoded((*Container).clone)
			if _, err := s.Containers(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
