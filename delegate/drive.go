package delegate

import (
	"context"
	"time"

	"github.com/scatterfs/scatter/pipeline"
	"github.com/scatterfs/scatter/upkeep"
)

// drive is a Repairer as an upkeep.Drive: no garbage ever, deletion stays the owner's.
type drive struct{ *Repairer }

var _ upkeep.Drive = drive{}

// Drive returns r as the upkeep.Drive an upkeep.Loop keeps alive.
func (r *Repairer) Drive() upkeep.Drive { return drive{r} }

// Garbage implements upkeep.Drive: a repairer never deletes.
func (drive) Garbage(context.Context, time.Time) ([]pipeline.Ref, error) { return nil, nil }

// DropGarbage implements upkeep.Drive: there is never garbage to drop.
func (drive) DropGarbage(context.Context, []pipeline.Ref) (int, error) { return 0, nil }
