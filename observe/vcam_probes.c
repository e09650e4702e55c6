// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam frame-path probes, compiled by bcc (observe/probes.py loads them).
 *
 * Each camera owns one entry in `cams`, found by its struct vcam_device
 * pointer: an array searched from a slot the pointer hashes to (a lookup
 * costs a few instructions, a hash map's about a hundred). A camera owns an
 * entry from its creation (or its first event, for cameras made before we
 * started) until vcam_device_free(), which frees the memory: so an owned
 * pointer is always a live camera, a new camera at a recycled address
 * starts from zero, and a closed camera's consumer that still streams off
 * only ever touches its own camera's entry.
 *
 * vb2 core events are kept only for vcam's queues, so a vivid stream
 * alongside never shows up here: a queue inside a camera that owns an entry
 * is vcam's (that memory is a live camera); any other queue is checked by
 * its ops (vcam_vb2_ops, its address written into `config` by the loader)
 * before its camera gets an entry.
 *
 * Cost: a probe hit is the dearest part (a kprobe several times a raw
 * tracepoint, a return probe twice a kprobe), so a zero-copy frame costs
 * as few hits as the metrics allow: three kprobes on vcam's event
 * functions and three vb2 raw tracepoints, no return probe (README.md
 * "Overhead"). Each hit finds its camera's entry without a hash map: all
 * of a camera's numbers, histograms and timestamps live in it. What must cross
 * from an entry probe to its return probe (the copy, stream on/off) is
 * kept in the thread's own task storage (`calls`), not a hash.
 */
#include <uapi/linux/ptrace.h>

/*
 * The kernel structures we read, opaque: where a field is comes from the
 * running kernel's BTF, written into `config` by the loader when vcam
 * appears. bcc compiles the media headers ten times slower than this whole
 * program, and offsets compiled in could not follow vcam being loaded after
 * us, or reloaded from another build.
 */
struct vcam_device;
struct vb2_queue;
struct vb2_buffer;

/* struct vcam_out_buf starts with its camera */
struct vcam_out_buf_head {
	struct vcam_device *dev;
};

/* Histogram kinds (observe/metrics.py names them) */
#define H_DELIVERY	0	/* output QUEUE -> frame in a capture buffer */
#define H_DEQUEUE	1	/* capture buffer done -> consumer DQBUF */
#define H_COPY		2	/* time in vcam_copy() */
#define H_FRAME		3	/* output QUEUE -> consumer DQBUF */
#define H_OUT_DEPTH	4	/* output depth at each output queue operation */
#define H_CAP_DEPTH	5	/* capture depth at each capture queue operation */
#define NR_HISTS	6
#define HIST_SLOTS	65	/* log2 ns slots 0..63; depths 0..64 (64: deeper) */
#define MAX_DEPTH_SLOT	64

#define CAP_INDEXES	64	/* vb2 capture buffer indexes we time (VB2_MAX_FRAME is 32) */
/*
 * An index already checked against a power-of-two size n, masked again:
 * clang may turn the check into a test the verifier cannot bound by.
 */
#define IDX(i, n)	((i) & ((n) - 1))

/* Self-monitoring */
#define ERR_MAP_FULL	0
#define ERR_UNPAIRED	1
#define NR_ERRORS	2

struct cam {
	u64 dev;	/* the camera's struct vcam_device, 0: a free entry */
	u64 dev_nr;	/* the N of its /dev/videoN */
	u64 id;		/* bpf_ktime_get_ns() when it was owned */
	/* Depths as each event sees them, for the depth histograms (the
	 * frame counters are the driver's own, read from sysfs) */
	s64 out_depth;
	s64 cap_depth;
	u64 streaming;
	char producer_comm[16];	/* TASK_COMM_LEN */
	char consumer_comm[16];
	u64 producer_thread;	/* bpf_get_current_pid_tgid() that named it */
	u64 consumer_thread;
	/* Per capture index, 0: none */
	u64 cap_done[CAP_INDEXES];	/* delivery time */
	u64 cap_frame[CAP_INDEXES];	/* QUEUE time of its frame */
	/* Histograms: counts per slot (flat, kind * HIST_SLOTS + slot), sums */
	u64 hist[NR_HISTS * HIST_SLOTS];
	u64 hist_sum[NR_HISTS];
};

/* What an entry probe hands to its return probe, per thread */
struct call {
	u64 dev;	/* 0: no call under way */
	u64 arg;
	u64 ts;
};

/*
 * Written by the loader (observe/probes.py) when vcam appears, all zero
 * while it is not loaded. dev_queue is 0 when the layout is unknown (no BTF):
 * then vb2 events are not told apart, and cameras get their entries from
 * vcam's own events, which carry their N.
 */
struct config {
	u64 vcam_ops;	/* address of vcam_vb2_ops, 0: unknown */
	u32 dev_queue;	/* offsetof(struct vcam_device, queue) */
	u32 dev_num;	/* offsetof(struct vcam_device, vdev) + offsetof(struct video_device, num), a u16 */
	u32 queue_ops;	/* offsetof(struct vb2_queue, ops) */
	u32 buf_index;	/* offsetof(struct vb2_buffer, index), a u32 */
};

BPF_ARRAY(config, struct config, 1);
#define MAX_CAMS	256	/* VIDEO_NUM_DEVICES: as many as /dev/videoN */
#define CAM_PROBES	4	/* slots a camera's entry may be in */
BPF_ARRAY(cams, struct cam, MAX_CAMS);	/* ~4.2 KiB each, 1.1 MiB */
BPF_ARRAY(blank, struct cam, 1);	/* all zero: a free entry */
BPF_TASK_STORAGE(calls, struct call);
BPF_ARRAY(errors, u64, NR_ERRORS);

static __always_inline void count_error(int which)
{
	errors.atomic_increment(which);
}

/* This thread's call record, made on first use */
static __always_inline struct call *this_call(void)
{
	struct call *c = calls.task_storage_get(bpf_get_current_task_btf(), 0,
						BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!c)
		count_error(ERR_MAP_FULL);
	return c;
}

/*
 * The call an entry probe left on this thread, NULL if none; the return
 * probe ends it (dev = 0)
 */
static __always_inline struct call *take_call(void)
{
	struct call *c = calls.task_storage_get(bpf_get_current_task_btf(), 0, 0);

	if (!c || !c->dev)
		return NULL;
	return c;
}

/* The first slot to search for a camera's entry: its pointer, hashed */
static __always_inline u32 cam_home(u64 dev)
{
	return (dev * 0x9E3779B97F4A7C15ULL) >> 56;	/* Fibonacci: top 8 bits */
}

/* The entry the camera owns, NULL if none */
static __always_inline struct cam *find_cam(u64 dev)
{
	u32 home = cam_home(dev), i, k;
	struct cam *c;

#pragma unroll
	for (i = 0; i < CAM_PROBES; i++) {
		k = (home + i) & (MAX_CAMS - 1);
		c = cams.lookup(&k);
		if (c && c->dev == dev)
			return c;
	}
	return NULL;
}

/*
 * A free entry, now the camera's (or the one an event of the camera on
 * another CPU claimed just now); NULL when all of its slots are taken
 */
static __always_inline struct cam *claim_cam(u64 dev, u32 dev_nr)
{
	u32 home = cam_home(dev), i, k;
	struct cam *c;

#pragma unroll
	for (i = 0; i < CAM_PROBES; i++) {
		k = (home + i) & (MAX_CAMS - 1);
		c = cams.lookup(&k);
		if (c && c->dev == dev)
			return c;
		if (c && !c->dev) {
			c->dev = dev;
			c->dev_nr = dev_nr;
			c->id = bpf_ktime_get_ns();
			return c;
		}
	}
	count_error(ERR_MAP_FULL);
	return NULL;
}

/* The camera's entry made free (all zero) again */
static __always_inline void free_cam(u64 dev)
{
	u32 home = cam_home(dev), i, k, zero = 0;
	struct cam *b = blank.lookup(&zero), *c;

	if (!b)
		return;
#pragma unroll
	for (i = 0; i < CAM_PROBES; i++) {
		k = (home + i) & (MAX_CAMS - 1);
		c = cams.lookup(&k);
		if (c && c->dev == dev)
			cams.update(&k, b);
	}
}

/* The camera's entry, claimed on its first event */
static __always_inline struct cam *get_cam(u64 dev, u32 dev_nr)
{
	struct cam *c = find_cam(dev);

	return c ? c : claim_cam(dev, dev_nr);
}

/* Upper-bound-inclusive log2 slot: value <= 2^slot */
static __always_inline u32 log2_slot(u64 v)
{
	return v <= 1 ? 0 : bpf_log2l(v - 1);
}

static __always_inline void hist_add(struct cam *c, u32 kind, u32 slot, u64 value)
{
	u32 i = kind * HIST_SLOTS + (slot < HIST_SLOTS ? slot : HIST_SLOTS - 1);

	/*
	 * Keep the bound check on i itself: clang would otherwise fold it into
	 * the clamp above, which the 6.1 verifier cannot follow to the index
	 * ("unbounded memory access").
	 */
	asm volatile("" : "+r"(i));
	if (i < NR_HISTS * HIST_SLOTS)
		lock_xadd(&c->hist[i], 1);
	if (kind < NR_HISTS)
		lock_xadd(&c->hist_sum[kind], value);
}

static __always_inline void observe_ns(struct cam *c, u32 kind, u64 ns)
{
	hist_add(c, kind, log2_slot(ns), ns);
}

static __always_inline void observe_depth(struct cam *c, u32 kind, s64 depth)
{
	u64 d = depth < 0 ? 0 : depth;

	hist_add(c, kind, d > MAX_DEPTH_SLOT ? MAX_DEPTH_SLOT : d, d);
}

/*
 * The current thread's name, read again only when another thread than last
 * time makes the call: a frame's calls come from the same few threads (one
 * that renames itself later keeps its old name here until another thread
 * calls in between)
 */
static __always_inline void note_comm(char *comm, u64 *thread)
{
	u64 t = bpf_get_current_pid_tgid();

	if (*thread != t) {
		*thread = t;
		bpf_get_current_comm(comm, 16);
	}
}

/* Read a timestamp and clear it */
static __always_inline u64 take(u64 *ts)
{
	u64 v = *ts;

	if (v)
		*ts = 0;
	return v;
}

/* The layout of vcam's structures, NULL while it is unknown */
static __always_inline struct config *layout(void)
{
	int zero = 0;
	struct config *cfg = config.lookup(&zero);

	return cfg && cfg->dev_queue ? cfg : NULL;
}

/* The camera of a vb2 queue, or 0 when the queue is not vcam's */
static __always_inline u64 vcam_dev_of_queue(struct config *cfg, struct vb2_queue *q)
{
	const void *ops = NULL;

	if (!cfg || !cfg->vcam_ops || !q)
		return 0;
	bpf_probe_read_kernel(&ops, sizeof(ops), (void *)q + cfg->queue_ops);
	if ((u64)ops != cfg->vcam_ops)
		return 0;
	return (u64)q - cfg->dev_queue;
}

static __always_inline u32 dev_nr_of(struct config *cfg, u64 dev)
{
	u16 num = 0;

	bpf_probe_read_kernel(&num, sizeof(num), (void *)dev + cfg->dev_num);
	return num;
}

/*
 * The camera of a vb2 queue's event, NULL when the queue is not vcam's. No
 * kernel memory is read for a camera that owns an entry: the common case.
 */
static __always_inline struct cam *cam_of_queue(struct config *cfg, struct vb2_queue *q)
{
	u64 dev;
	struct cam *c;

	if (!cfg)
		return NULL;
	dev = (u64)q - cfg->dev_queue;
	c = find_cam(dev);
	if (c)
		return c;
	dev = vcam_dev_of_queue(cfg, q);
	return dev ? claim_cam(dev, dev_nr_of(cfg, dev)) : NULL;
}

/* ---- camera lifetime ------------------------------------------------- */

/* A new camera starts from zero */
int ret_device_create(struct pt_regs *ctx)
{
	u64 dev = PT_REGS_RC(ctx);
	struct config *cfg;

	if (!dev || dev >= (u64)-4095)	/* NULL or ERR_PTR() */
		return 0;
	free_cam(dev);		/* left over if we missed its predecessor's free */
	cfg = layout();
	if (cfg)		/* else its first event claims it */
		claim_cam(dev, dev_nr_of(cfg, dev));
	return 0;
}

/* The camera's memory is about to be freed: forget it */
int entry_device_free(struct pt_regs *ctx, unsigned int dev_nr, void *dev)
{
	free_cam((u64)dev);
	return 0;
}

/* ---- producer side and the frame path: vcam's event functions -------- */

/*
 * vcam_out_queued() and vcam_frame_delivered() run only when their event
 * happened, under the camera's lock, so an entry probe sees each event once
 * and in order: a frame is queued before it is delivered, and delivered
 * before its capture buffer can be dequeued.
 */

int entry_out_queued(struct pt_regs *ctx, unsigned int dev_nr, void *dev,
		     u32 out_index, u64 queued_ns)
{
	struct cam *cam = get_cam((u64)dev, dev_nr);

	if (!cam)
		return 0;
	lock_xadd(&cam->out_depth, 1);
	observe_depth(cam, H_OUT_DEPTH, cam->out_depth);
	note_comm(cam->producer_comm, &cam->producer_thread);
	return 0;
}

/* A pending frame dropped undelivered: the consumer stopped streaming */
int entry_out_dropped(struct pt_regs *ctx, unsigned int dev_nr, void *dev,
		      u32 out_index)
{
	struct cam *cam = get_cam((u64)dev, dev_nr);

	if (!cam)
		return 0;
	lock_xadd(&cam->out_depth, -1);
	observe_depth(cam, H_OUT_DEPTH, cam->out_depth);
	return 0;
}

/* counted (the path) and bytes_copied are the driver's counters' business */
int entry_frame_delivered(struct pt_regs *ctx, unsigned int dev_nr, void *dev,
			  u32 cap_index, u32 counted, u32 bytes_copied,
			  u64 queued_ns)
{
	struct cam *cam = get_cam((u64)dev, dev_nr);
	u64 now;

	if (!cam)
		return 0;
	/* The frame left the pending list */
	lock_xadd(&cam->out_depth, -1);
	observe_depth(cam, H_OUT_DEPTH, cam->out_depth);

	now = bpf_ktime_get_ns();
	observe_ns(cam, H_DELIVERY, now - queued_ns);
	if (cap_index < CAP_INDEXES) {
		/* The consumer will DQBUF this buffer */
		cam->cap_done[IDX(cap_index, CAP_INDEXES)] = now;
		cam->cap_frame[IDX(cap_index, CAP_INDEXES)] = queued_ns;
	}
	return 0;
}

/* Copy path only: the time the copy itself takes */
int entry_copy(struct pt_regs *ctx, unsigned int dev_nr, u32 out_index,
	       u32 cap_index, u32 bytes, struct vcam_out_buf_head *out)
{
	struct call *c = this_call();

	if (c) {
		c->arg = dev_nr;
		c->ts = bpf_ktime_get_ns();
		bpf_probe_read_kernel(&c->dev, sizeof(c->dev), &out->dev);
	}
	return 0;
}

int ret_copy(struct pt_regs *ctx)
{
	struct call *c = take_call();
	struct cam *cam;

	if (!c) {
		count_error(ERR_UNPAIRED);
		return 0;
	}
	cam = get_cam(c->dev, c->arg);
	if (cam)
		observe_ns(cam, H_COPY, bpf_ktime_get_ns() - c->ts);
	c->dev = 0;
	return 0;
}

/* ---- videobuf2 core, vcam's queues only ------------------------------ */

/* A capture buffer handed to the driver (vb2's __enqueue_in_driver) */
int on_vb2_buf_queue(struct bpf_raw_tracepoint_args *ctx)
{
	struct cam *cam = cam_of_queue(layout(), (struct vb2_queue *)ctx->args[0]);

	if (cam) {
		lock_xadd(&cam->cap_depth, 1);
		observe_depth(cam, H_CAP_DEPTH, cam->cap_depth);
	}
	return 0;
}

/* A capture buffer is done: vb2_buffer_done(), deliveries and returns alike */
int on_vb2_buf_done(struct bpf_raw_tracepoint_args *ctx)
{
	struct cam *cam = cam_of_queue(layout(), (struct vb2_queue *)ctx->args[0]);

	if (cam) {
		lock_xadd(&cam->cap_depth, -1);
		observe_depth(cam, H_CAP_DEPTH, cam->cap_depth);
	}
	return 0;
}

/* The consumer took a buffer: vb2_core_dqbuf() */
int on_vb2_dqbuf(struct bpf_raw_tracepoint_args *ctx)
{
	struct config *cfg = layout();
	struct cam *cam = cam_of_queue(cfg, (struct vb2_queue *)ctx->args[0]);
	struct vb2_buffer *vb = (struct vb2_buffer *)ctx->args[1];
	u64 now = bpf_ktime_get_ns(), done, queued;
	u32 index = 0;

	if (!cam || !cfg)	/* no cam without cfg; the verifier wants it said */
		return 0;
	note_comm(cam->consumer_comm, &cam->consumer_thread);
	bpf_probe_read_kernel(&index, sizeof(index), (void *)vb + cfg->buf_index);
	if (index >= CAP_INDEXES)
		return 0;
	done = take(&cam->cap_done[IDX(index, CAP_INDEXES)]);
	queued = take(&cam->cap_frame[IDX(index, CAP_INDEXES)]);
	if (done)
		observe_ns(cam, H_DEQUEUE, now - done);
	if (queued)
		observe_ns(cam, H_FRAME, now - queued);
	return 0;
}

static __always_inline int entry_stream(struct vb2_queue *q, u64 on)
{
	u64 dev = vcam_dev_of_queue(layout(), q);
	struct call *c;

	if (!dev)
		return 0;
	c = this_call();
	if (c) {
		c->dev = dev;
		c->arg = on;
	}
	return 0;
}

int entry_core_streamon(struct pt_regs *ctx, struct vb2_queue *q)
{
	return entry_stream(q, 1);
}

int entry_core_streamoff(struct pt_regs *ctx, struct vb2_queue *q)
{
	return entry_stream(q, 0);
}

static __always_inline int ret_stream(struct pt_regs *ctx)
{
	struct call *c = take_call();
	struct config *cfg = layout();
	struct cam *cam;

	if (!c)
		return 0;	/* not a vcam queue */
	if (PT_REGS_RC(ctx) == 0 && cfg) {
		cam = get_cam(c->dev, dev_nr_of(cfg, c->dev));
		if (cam)
			cam->streaming = c->arg;
	}
	c->dev = 0;
	return 0;
}

/* The queue's owner closed it, streaming or not (vb2_fop_release) */
int entry_core_queue_release(struct pt_regs *ctx, struct vb2_queue *q)
{
	struct cam *cam = cam_of_queue(layout(), q);

	if (cam)
		cam->streaming = 0;
	return 0;
}

/* One program per attach point, so that each has its own miss count */
int ret_core_streamon(struct pt_regs *ctx)
{
	return ret_stream(ctx);
}

int ret_core_streamoff(struct pt_regs *ctx)
{
	return ret_stream(ctx);
}
