package volume

// Crash stops v as kill -9 would leave it: nothing more is journalled or committed, no
// staging file is removed. The directories can be opened again with Open.
func Crash(v *Volume) {
	v.wb.close()
	v.reads.close()
	v.mu.Lock()
	for _, f := range v.files {
		if f.stage != nil {
			f.stage.Close()
		}
	}
	v.mu.Unlock()
	v.db.Close()
}
