package oci

import (
	"strings"

	"golang.org/x/sys/unix"
)

// mountOpts is a runtime-spec mount option list decoded into mount(2)
// flags, separate propagation changes, mount_setattr(2) recursive
// attributes and the filesystem data string.
type mountOpts struct {
	flags       uintptr
	clearFlags  uintptr // flags explicitly cleared ("rw", "suid"...), for bind remounts
	propagation []uintptr
	recSet      uint64 // MOUNT_ATTR_* set recursively ("rro", "rnosuid"...)
	recClr      uint64
	data        string
}

type flagOpt struct {
	clear bool
	flag  uintptr
}

// mountFlagOpts are the options that become mount(2) flags.
var mountFlagOpts = map[string]flagOpt{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

// propagationOpts change a mount's propagation with a separate mount(2).
var propagationOpts = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

type recOpt struct {
	clear bool
	attr  uint64
}

// recursiveOpts are applied to the whole mount tree with
// mount_setattr(AT_RECURSIVE) (Linux 5.12+).
var recursiveOpts = map[string]recOpt{
	"rro":          {false, unix.MOUNT_ATTR_RDONLY},
	"rrw":          {true, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":      {false, unix.MOUNT_ATTR_NOSUID},
	"rsuid":        {true, unix.MOUNT_ATTR_NOSUID},
	"rnodev":       {false, unix.MOUNT_ATTR_NODEV},
	"rdev":         {true, unix.MOUNT_ATTR_NODEV},
	"rnoexec":      {false, unix.MOUNT_ATTR_NOEXEC},
	"rexec":        {true, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":  {false, unix.MOUNT_ATTR_NODIRATIME},
	"rdiratime":    {true, unix.MOUNT_ATTR_NODIRATIME},
	"rnosymfollow": {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rsymfollow":   {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// parseMountOptions decodes a runtime-spec option list. Unknown options
// are passed to the filesystem as data, as mount(8) does.
func parseMountOptions(options []string) mountOpts {
	var m mountOpts
	var data []string
	for _, o := range options {
		if f, ok := mountFlagOpts[o]; ok {
			if f.clear {
				m.flags &^= f.flag
				m.clearFlags |= f.flag
			} else {
				m.flags |= f.flag
				m.clearFlags &^= f.flag
			}
			continue
		}
		if p, ok := propagationOpts[o]; ok {
			m.propagation = append(m.propagation, p)
			continue
		}
		if r, ok := recursiveOpts[o]; ok {
			if r.clear {
				m.recClr |= r.attr
				m.recSet &^= r.attr
			} else {
				m.recSet |= r.attr
				m.recClr &^= r.attr
			}
			continue
		}
		data = append(data, o)
	}
	m.data = strings.Join(data, ",")
	return m
}

// isBind reports whether the options describe a bind mount.
func (m mountOpts) isBind() bool { return m.flags&unix.MS_BIND != 0 }
