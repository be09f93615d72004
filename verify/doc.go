// Package verify checks that a program survives a checkpoint and restart
// at any moment: it is what `emuckpt verify` runs.
//
// A verify has three steps.
//
//  1. The reference: the program runs once, deterministically (virtual
//     clock, seeded randomness; see kernel.VirtualClock), with checkpoints
//     enabled and left running, so emuckpt_checkpoint() returns 1 as in
//     `emuckpt run --checkpoint-to IMG --leave-running`. Its stdout,
//     stderr and exit status are recorded, and how many events of each
//     kind it had: system calls, device MMIO accesses and
//     emuckpt_checkpoint() calls.
//  2. The pass: the program runs once more, the same way, and takes a
//     checkpoint at every chosen point (kernel.CheckpointConfig's
//     AtSyscalls and AtDevices), each an in-memory image, a delta
//     against the point before (kernel.CheckpointConfig.Incremental,
//     ckpt.WriteBufferDelta). The pass must print what the reference printed,
//     or the program is not deterministic and nothing can be compared.
//  3. The restores: each image is restored in a new VM under each
//     device-state policy (fresh, preserve) and each perturbation, and
//     run to its end, in parallel (Config.Jobs) while the pass goes on.
//     What the pass printed before the point plus what the restored run
//     printed must equal the reference, and so must the exit status.
//
// The program runs twice whatever the number of points; each point costs
// one snapshot and one restore per policy and perturbation, so the time
// grows linearly with the number of points.
//
// Points (see Select) are every K-th event (Config.Every) or N events
// spread evenly (Config.Points; the default is every event up to 200,
// else 200), of the kinds Config.At names, plus every
// emuckpt_checkpoint() call, where the restored program sees the call
// return 2. A program that prints which side of the call it is on
// therefore diverges at those points, by design; a program that does
// what it should after a restart does not.
//
// Perturbations (see Perturbation) add what a real restart may bring:
// the HPET counter moved on, the guest clocks moved on, the BSR cleared.
//
// Sharding (Shard) splits the points deterministically; Records and
// Merge join the shards' results; JUnit renders them for CI servers.
package verify
