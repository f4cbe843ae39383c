package volume

// span is the half-open byte range [off, end) of a file.
type span struct{ off, end int64 }

func (s span) len() int64 { return s.end - s.off }

// ranges is a set of byte offsets kept as sorted, disjoint, non-adjacent spans. The
// write-back state of a file (dirty bytes, bytes being uploaded) is kept in ranges.
type ranges []span

// add inserts [off, end), merging with touching spans.
func (r *ranges) add(off, end int64) {
	if off >= end {
		return
	}
	s := *r
	// i: first span that ends at or after off (may merge); j: first span that starts after end.
	i := 0
	for i < len(s) && s[i].end < off {
		i++
	}
	j := i
	for j < len(s) && s[j].off <= end {
		off = min(off, s[j].off)
		end = max(end, s[j].end)
		j++
	}
	out := make(ranges, 0, len(s)-(j-i)+1)
	out = append(out, s[:i]...)
	out = append(out, span{off, end})
	out = append(out, s[j:]...)
	*r = out
}

// remove deletes [off, end) from the set and returns how many bytes it removed.
func (r *ranges) remove(off, end int64) int64 {
	if off >= end {
		return 0
	}
	var removed int64
	out := make(ranges, 0, len(*r)+1)
	for _, s := range *r {
		if s.end <= off || s.off >= end {
			out = append(out, s)
			continue
		}
		removed += min(s.end, end) - max(s.off, off)
		if s.off < off {
			out = append(out, span{s.off, off})
		}
		if s.end > end {
			out = append(out, span{end, s.end})
		}
	}
	*r = out
	return removed
}

// overlap returns how many bytes of [off, end) are in the set.
func (r ranges) overlap(off, end int64) int64 {
	var n int64
	for _, s := range r {
		if s.off >= end {
			break
		}
		if s.end > off {
			n += min(s.end, end) - max(s.off, off)
		}
	}
	return n
}

// total returns the number of bytes in the set.
func (r ranges) total() int64 {
	var n int64
	for _, s := range r {
		n += s.len()
	}
	return n
}

// intersect returns the parts of the set inside [off, end).
func (r ranges) intersect(off, end int64) ranges {
	var out ranges
	for _, s := range r {
		if s.off >= end {
			break
		}
		if s.end > off {
			out = append(out, span{max(s.off, off), min(s.end, end)})
		}
	}
	return out
}

// union returns a new set holding the bytes of both sets.
func (r ranges) union(o ranges) ranges {
	out := append(ranges(nil), r...)
	for _, s := range o {
		out.add(s.off, s.end)
	}
	return out
}

// next returns the first span of the set that ends after off, clipped to start at off.
func (r ranges) next(off int64) (span, bool) {
	for _, s := range r {
		if s.end > off {
			return span{max(s.off, off), s.end}, true
		}
	}
	return span{}, false
}

// subtract returns the bytes of the set that are not in o.
func (r ranges) subtract(o ranges) ranges {
	out := append(ranges(nil), r...)
	for _, s := range o {
		out.remove(s.off, s.end)
	}
	return out
}
