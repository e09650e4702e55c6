// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam frame-path probes, compiled by bcc (observe/probes.py loads them).
 *
 * Cameras are keyed by their struct vcam_device pointer, not by N of
 * /dev/videoN: a closed camera's consumer may still stream off after a new
 * camera took its number, and that must not touch the new one's numbers.
 * A new camera at a recycled address starts from a blank entry.
 *
 * vb2 core events are kept only for queues whose ops are vcam's
 * (vcam_vb2_ops, its address written into `config` by the loader), so a
 * vivid stream alongside never shows up here.
 *
 * Cost: every probe hit is a trap, the dearest part under emulation, so a
 * frame costs as few hits as the metrics allow (8 on the zero-copy path,
 * README.md "Overhead"), and each hit as few hash map operations: all of a
 * camera's numbers, histograms and timestamps live in its one `cams` entry
 * (one lookup), and what must cross from an entry probe to its return
 * probe is kept in the thread's own task storage (`calls`), not a hash.
 */
#include <uapi/linux/ptrace.h>
#include <media/v4l2-device.h>
#include <media/v4l2-dev.h>
#include <media/videobuf2-core.h>

/*
 * The stable head of the driver's struct vcam_device (driver/vcam-core.h):
 * only kernel types, so no driver header is needed here.
 */
struct vcam_device_head {
	struct v4l2_device v4l2_dev;
	struct video_device vdev;
	struct vb2_queue queue;
};

/* struct vcam_out_buf starts with its camera */
struct vcam_out_buf_head {
	struct vcam_device_head *dev;
};

/* Mirrors struct vcam_ioc_queue (uAPI) */
struct vcam_ioc_queue_head {
	u32 fd;
	u32 index;
	u32 length;
	u32 reserved;
	u64 timestamp;
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

#define OUT_SLOTS	32	/* VCAM_MAX_FRAMES (uAPI) */
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
	u64 dev_nr;
	u64 id;		/* bpf_ktime_get_ns() when the entry was made */
	u64 frames_queued;
	u64 frames_dequeued;
	u64 frames_zero_copy;
	u64 frames_copied;
	u64 frames_errored;
	u64 bytes_copied;
	s64 out_depth;
	s64 cap_depth;
	u64 streaming;
	char producer_comm[16];	/* TASK_COMM_LEN */
	char consumer_comm[16];
	/*
	 * The delivery under way: vcam_dispatch() runs in the camera's one
	 * work item, so there is at most one per camera.
	 */
	u64 disp_thread;	/* bpf_get_current_pid_tgid() in vcam_dispatch(), 0: none */
	u64 disp_queued;	/* QUEUE time of its frame, 0: unknown */
	u64 disp_bytes;
	u64 disp_copied;	/* vcam_copy() succeeded */
	/* Timestamps, 0: none */
	u64 out_queued[OUT_SLOTS];	/* output slot -> its QUEUE time */
	u64 cap_done[CAP_INDEXES];	/* capture index -> vb2_buffer_done time */
	u64 cap_frame[CAP_INDEXES];	/* capture index -> QUEUE time of its frame */
	/* Histograms: counts per slot (flat, kind * HIST_SLOTS + slot), sums */
	u64 hist[NR_HISTS * HIST_SLOTS];
	u64 hist_sum[NR_HISTS];
};

/* What an entry probe hands to its return probe, per thread */
struct call {
	u64 dev;	/* 0: no call under way */
	u64 arg;
	u64 ts;
	u32 index;
	u32 stamped;	/* entry_out_queue left the slot's QUEUE stamp */
};

BPF_ARRAY(config, u64, 1);		/* [0]: address of vcam_vb2_ops */
/* ~4.6 KiB a camera: allocated per camera, not up front */
BPF_F_TABLE("hash", u64, struct cam, cams, 1024, BPF_F_NO_PREALLOC);
BPF_ARRAY(blank, struct cam, 1);	/* all zero: a new camera's entry */
BPF_HASH(newest, u32, u64, 1024);	/* N -> the camera created last with it */
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

/* A camera's entry: a blank one made on first sight, or made blank (reset) */
static __always_inline struct cam *new_cam(u64 dev, u32 dev_nr, bool reset)
{
	int zero = 0, err;
	struct cam *b = blank.lookup(&zero);
	struct cam *c;

	if (!b)
		return NULL;
	err = reset ? cams.update(&dev, b) : cams.insert(&dev, b);
	if (err && err != -EEXIST) {
		count_error(ERR_MAP_FULL);
		return NULL;
	}
	c = cams.lookup(&dev);
	if (c && !c->id) {
		c->dev_nr = dev_nr;
		c->id = bpf_ktime_get_ns();
	}
	return c;
}

static __always_inline struct cam *get_cam(u64 dev, u32 dev_nr)
{
	struct cam *c = cams.lookup(&dev);

	return c ? c : new_cam(dev, dev_nr, false);
}

/* Upper-bound-inclusive log2 slot: value <= 2^slot */
static __always_inline u32 log2_slot(u64 v)
{
	return v <= 1 ? 0 : bpf_log2l(v - 1);
}

static __always_inline void hist_add(struct cam *c, u32 kind, u32 slot, u64 value)
{
	u32 i = kind * HIST_SLOTS + (slot < HIST_SLOTS ? slot : HIST_SLOTS - 1);

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

/* Read a timestamp and clear it */
static __always_inline u64 take(u64 *ts)
{
	u64 v = *ts;

	if (v)
		*ts = 0;
	return v;
}

/* The camera of a vb2 queue, or 0 when the queue is not vcam's */
static __always_inline u64 vcam_dev_of_queue(struct vb2_queue *q)
{
	int zero = 0;
	u64 *vcam_ops = config.lookup(&zero);
	const void *ops = NULL;

	if (!vcam_ops || !*vcam_ops || !q)
		return 0;
	bpf_probe_read_kernel(&ops, sizeof(ops), &q->ops);
	if ((u64)ops != *vcam_ops)
		return 0;
	return (u64)q - offsetof(struct vcam_device_head, queue);
}

static __always_inline u32 dev_nr_of(u64 dev)
{
	struct vcam_device_head *head = (struct vcam_device_head *)dev;
	u16 num = 0;

	bpf_probe_read_kernel(&num, sizeof(num), &head->vdev.num);
	return num;
}

/* The camera of a vb2 queue's event; the N is read only for a new entry */
static __always_inline struct cam *cam_of_queue(struct vb2_queue *q)
{
	u64 dev = vcam_dev_of_queue(q);
	struct cam *c;

	if (!dev)
		return NULL;
	c = cams.lookup(&dev);
	return c ? c : new_cam(dev, dev_nr_of(dev), false);
}

/* ---- camera lifetime ------------------------------------------------- */

/* A new camera starts from zero, even at a recycled address */
int ret_device_create(struct pt_regs *ctx)
{
	u64 dev = PT_REGS_RC(ctx);
	u32 nr;

	if (!dev || dev >= (u64)-4095)	/* NULL or ERR_PTR() */
		return 0;
	nr = dev_nr_of(dev);
	if (new_cam(dev, nr, true) && newest.update(&nr, &dev))
		count_error(ERR_MAP_FULL);
	return 0;
}

/* ---- producer side: output QUEUE / DEQUEUE -------------------------- */

int entry_out_queue(struct pt_regs *ctx, unsigned int dev_nr, void *dev,
		    const struct vcam_ioc_queue_head *req)
{
	struct call c = { .dev = (u64)dev, .arg = dev_nr, .ts = bpf_ktime_get_ns() };
	struct cam *cam = get_cam((u64)dev, dev_nr);
	struct call *slot = this_call();

	bpf_probe_read_kernel(&c.index, sizeof(c.index), &req->index);
	/*
	 * Stamp the slot now, not on return: the frame path may run on
	 * another CPU and dispatch the frame before this call returns. A slot
	 * that is still queued keeps its stamp (the QUEUE will be refused);
	 * a QUEUE that fails takes its own stamp back on return.
	 */
	if (cam && c.index < OUT_SLOTS && !cam->out_queued[IDX(c.index, OUT_SLOTS)]) {
		cam->out_queued[IDX(c.index, OUT_SLOTS)] = c.ts;
		c.stamped = 1;
	}
	if (slot)
		*slot = c;
	return 0;
}

int ret_out_queue(struct pt_regs *ctx)
{
	struct call *c = take_call();
	struct cam *cam;

	if (!c) {
		count_error(ERR_UNPAIRED);
		return 0;
	}
	cam = get_cam(c->dev, c->arg);
	if (cam && PT_REGS_RC(ctx) == 0) {
		lock_xadd(&cam->frames_queued, 1);
		lock_xadd(&cam->out_depth, 1);
		bpf_get_current_comm(&cam->producer_comm, sizeof(cam->producer_comm));
		observe_depth(cam, H_OUT_DEPTH, cam->out_depth);
	} else if (cam && c->stamped && c->index < OUT_SLOTS &&
		   cam->out_queued[IDX(c->index, OUT_SLOTS)] == c->ts) {
		cam->out_queued[IDX(c->index, OUT_SLOTS)] = 0;
	}
	c->dev = 0;
	return 0;
}

int entry_out_dequeue(struct pt_regs *ctx, unsigned int dev_nr, void *dev)
{
	struct call *c = this_call();

	if (c) {
		c->dev = (u64)dev;
		c->arg = dev_nr;
	}
	return 0;
}

int ret_out_dequeue(struct pt_regs *ctx)
{
	struct call *c = take_call();
	struct cam *cam;

	if (!c) {
		count_error(ERR_UNPAIRED);
		return 0;
	}
	if (PT_REGS_RC(ctx) == 0) {
		cam = get_cam(c->dev, c->arg);
		if (cam)
			lock_xadd(&cam->frames_dequeued, 1);
	}
	c->dev = 0;
	return 0;
}

/* ---- the frame path -------------------------------------------------- */

/*
 * A delivery starts. Its path and its end are seen at vb2_buffer_done(),
 * which vcam_dispatch() always calls, so no return probe is needed here.
 */
int entry_dispatch(struct pt_regs *ctx, unsigned int dev_nr, u32 out_index,
		   u32 cap_index, u32 bytes, struct vcam_out_buf_head *out)
{
	struct cam *cam;
	u64 dev = 0;

	bpf_probe_read_kernel(&dev, sizeof(dev), &out->dev);
	cam = get_cam(dev, dev_nr);
	if (!cam)
		return 0;
	cam->disp_thread = bpf_get_current_pid_tgid();
	cam->disp_queued = out_index < OUT_SLOTS ? take(&cam->out_queued[IDX(out_index, OUT_SLOTS)]) : 0;
	cam->disp_bytes = bytes;
	cam->disp_copied = 0;
	/* The frame left the pending list just before this call */
	lock_xadd(&cam->out_depth, -1);
	observe_depth(cam, H_OUT_DEPTH, cam->out_depth);
	return 0;
}

/* Copy path only: the copy's duration and whether it succeeded */
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
	if (cam) {
		observe_ns(cam, H_COPY, bpf_ktime_get_ns() - c->ts);
		if (PT_REGS_RC(ctx) == 0 && cam->disp_thread == bpf_get_current_pid_tgid())
			cam->disp_copied = 1;
	}
	c->dev = 0;
	return 0;
}

/* ---- videobuf2 core, vcam's queues only ------------------------------ */

/* A capture buffer handed to the driver (vb2's __enqueue_in_driver) */
int on_vb2_buf_queue(struct bpf_raw_tracepoint_args *ctx)
{
	struct cam *cam = cam_of_queue((struct vb2_queue *)ctx->args[0]);

	if (cam) {
		lock_xadd(&cam->cap_depth, 1);
		observe_depth(cam, H_CAP_DEPTH, cam->cap_depth);
	}
	return 0;
}

/*
 * A capture buffer is done. Inside vcam_dispatch() on the same thread it
 * is a delivery: counted by path as the driver counts (an error wins over
 * the path), and timed.
 */
int entry_buffer_done(struct pt_regs *ctx, struct vb2_buffer *vb,
		      enum vb2_buffer_state state)
{
	struct vb2_queue *q = NULL;
	struct cam *cam;
	u32 index = 0;
	u64 now;

	bpf_probe_read_kernel(&q, sizeof(q), &vb->vb2_queue);
	cam = cam_of_queue(q);
	if (!cam)
		return 0;
	lock_xadd(&cam->cap_depth, -1);
	observe_depth(cam, H_CAP_DEPTH, cam->cap_depth);
	if (!cam->disp_thread || cam->disp_thread != bpf_get_current_pid_tgid())
		return 0;	/* not a delivery: buffers returned at stream off */

	cam->disp_thread = 0;
	if (state == VB2_BUF_STATE_ERROR)
		lock_xadd(&cam->frames_errored, 1);
	else if (cam->disp_copied)
		lock_xadd(&cam->frames_copied, 1);
	else
		lock_xadd(&cam->frames_zero_copy, 1);
	if (cam->disp_copied)
		lock_xadd(&cam->bytes_copied, cam->disp_bytes);

	now = bpf_ktime_get_ns();
	bpf_probe_read_kernel(&index, sizeof(index), &vb->index);
	if (index < CAP_INDEXES) {
		/* The consumer will DQBUF this buffer */
		cam->cap_done[IDX(index, CAP_INDEXES)] = now;
		cam->cap_frame[IDX(index, CAP_INDEXES)] = cam->disp_queued;
	}
	if (cam->disp_queued)
		observe_ns(cam, H_DELIVERY, now - cam->disp_queued);
	else
		count_error(ERR_UNPAIRED);
	return 0;
}

/* The consumer took a buffer: vb2_core_dqbuf() */
int on_vb2_dqbuf(struct bpf_raw_tracepoint_args *ctx)
{
	struct cam *cam = cam_of_queue((struct vb2_queue *)ctx->args[0]);
	struct vb2_buffer *vb = (struct vb2_buffer *)ctx->args[1];
	u64 now = bpf_ktime_get_ns(), done, queued;
	u32 index = 0;

	if (!cam)
		return 0;
	bpf_get_current_comm(&cam->consumer_comm, sizeof(cam->consumer_comm));
	bpf_probe_read_kernel(&index, sizeof(index), &vb->index);
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
	u64 dev = vcam_dev_of_queue(q);
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
	struct cam *cam;

	if (!c)
		return 0;	/* not a vcam queue */
	if (PT_REGS_RC(ctx) == 0) {
		cam = get_cam(c->dev, dev_nr_of(c->dev));
		if (cam)
			cam->streaming = c->arg;
	}
	c->dev = 0;
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
