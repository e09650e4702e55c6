// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam frame-path probes, compiled by bcc (observe/probes.py loads them).
 *
 * Cameras are keyed by their struct vcam_device pointer, not by N of
 * /dev/videoN: a closed camera's consumer may still stream off after a new
 * camera took its number, and that must not touch the new one's numbers.
 * Histograms and timestamps are keyed by the camera's id (the time its
 * entry was made), so a new camera at a recycled address starts empty.
 *
 * vb2 core events are kept only for queues whose ops are vcam's
 * (vcam_vb2_ops, its address written into `config` by the loader), so a
 * vivid stream alongside never shows up here.
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

/* enum vcam_path, the return value of vcam_dispatch() */
#define PATH_ZERO_COPY	0
#define PATH_COPY	1
#define PATH_ERROR	2

/* Histogram kinds (observe/metrics.py names them) */
#define H_DELIVERY	0	/* output QUEUE -> frame in a capture buffer */
#define H_DEQUEUE	1	/* capture buffer done -> consumer DQBUF */
#define H_COPY		2	/* time in vcam_copy() */
#define H_FRAME		3	/* output QUEUE -> consumer DQBUF */
#define H_OUT_DEPTH	4	/* output depth at each output queue operation */
#define H_CAP_DEPTH	5	/* capture depth at each capture queue operation */

#define SUM_SLOT	0xffff	/* the histogram's sum, next to its slots */
#define MAX_DEPTH_SLOT	64

/* Timestamps per buffer */
#define TS_OUT_QUEUED	0	/* output slot index -> QUEUE time */
#define TS_CAP_DONE	1	/* capture index -> vb2_buffer_done time */
#define TS_CAP_FRAME	2	/* capture index -> QUEUE time of its frame */

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
};

struct hist_key {
	u64 cam;	/* struct cam.id */
	u32 kind;
	u32 slot;
};

struct ts_key {
	u64 cam;	/* struct cam.id */
	u32 kind;
	u32 index;
};

/* What an entry probe hands to its return probe, per thread */
struct call {
	u64 dev;
	u64 arg;
	u64 ts;
	u32 index;
	u32 stamped;	/* entry_out_queue left the slot's QUEUE stamp */
};

struct dispatch {
	u64 dev;
	u64 cam;
	u64 ts;
	u64 copy_ts;
	u64 queued_ts;
	u32 dev_nr;
	u32 out_index;
	u32 cap_index;
	u32 bytes;
	u32 done_state;
};

BPF_ARRAY(config, u64, 1);		/* [0]: address of vcam_vb2_ops */
BPF_HASH(cams, u64, struct cam, 1024);
BPF_HASH(newest, u32, u64, 1024);	/* N -> the camera created last with it */
BPF_HASH(hists, struct hist_key, u64, 16384);
BPF_HASH(stamps, struct ts_key, u64, 16384);
BPF_HASH(calls, u32, struct call, 4096);
BPF_HASH(dispatches, u32, struct dispatch, 1024);
BPF_ARRAY(errors, u64, NR_ERRORS);

static __always_inline void count_error(int which)
{
	errors.atomic_increment(which);
}

static __always_inline u32 tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

static __always_inline struct cam *get_cam(u64 dev, u32 dev_nr)
{
	struct cam *c = cams.lookup(&dev);
	struct cam init = {};

	if (c)
		return c;
	init.dev_nr = dev_nr;
	init.id = bpf_ktime_get_ns();
	cams.insert(&dev, &init);
	c = cams.lookup(&dev);
	if (!c)
		count_error(ERR_MAP_FULL);
	return c;
}

/* Upper-bound-inclusive log2 slot: value <= 2^slot */
static __always_inline u32 log2_slot(u64 v)
{
	return v <= 1 ? 0 : bpf_log2l(v - 1);
}

static __always_inline void hist_add(u64 cam, u32 kind, u32 slot, u64 value)
{
	struct hist_key key = { .cam = cam, .kind = kind, .slot = slot };

	hists.atomic_increment(key);
	key.slot = SUM_SLOT;
	hists.atomic_increment(key, value);
}

static __always_inline void observe_ns(u64 cam, u32 kind, u64 ns)
{
	hist_add(cam, kind, log2_slot(ns), ns);
}

static __always_inline void observe_depth(u64 cam, u32 kind, s64 depth)
{
	u64 d = depth < 0 ? 0 : depth;

	hist_add(cam, kind, d > MAX_DEPTH_SLOT ? MAX_DEPTH_SLOT : d, d);
}

static __always_inline void stamp_set(u64 cam, u32 kind, u32 index, u64 ts)
{
	struct ts_key key = { .cam = cam, .kind = kind, .index = index };

	if (stamps.update(&key, &ts))
		count_error(ERR_MAP_FULL);
}

static __always_inline u64 stamp_take(u64 cam, u32 kind, u32 index)
{
	struct ts_key key = { .cam = cam, .kind = kind, .index = index };
	u64 *ts = stamps.lookup(&key);
	u64 v = ts ? *ts : 0;

	if (ts)
		stamps.delete(&key);
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

/* ---- camera lifetime ------------------------------------------------- */

/* A new camera starts from zero, even at a recycled address */
int ret_device_create(struct pt_regs *ctx)
{
	u64 dev = PT_REGS_RC(ctx);
	struct cam init = {};
	u32 nr;

	if (!dev || dev >= (u64)-4095)	/* NULL or ERR_PTR() */
		return 0;
	init.dev_nr = dev_nr_of(dev);
	init.id = bpf_ktime_get_ns();
	nr = init.dev_nr;
	if (cams.update(&dev, &init) || newest.update(&nr, &dev))
		count_error(ERR_MAP_FULL);
	return 0;
}

/* ---- producer side: output QUEUE / DEQUEUE -------------------------- */

int entry_out_queue(struct pt_regs *ctx, unsigned int dev_nr, void *dev,
		    const struct vcam_ioc_queue_head *req)
{
	struct call c = { .dev = (u64)dev, .arg = dev_nr, .ts = bpf_ktime_get_ns() };
	struct cam *cam = get_cam((u64)dev, dev_nr);
	u32 t = tid();

	bpf_probe_read_kernel(&c.index, sizeof(c.index), &req->index);
	/*
	 * Stamp the slot now, not on return: the frame path may run on
	 * another CPU and dispatch the frame before this call returns. A slot
	 * that is still queued keeps its stamp (the QUEUE will be refused);
	 * a QUEUE that fails takes its own stamp back on return.
	 */
	if (cam) {
		struct ts_key key = { .cam = cam->id, .kind = TS_OUT_QUEUED, .index = c.index };

		int err = stamps.insert(&key, &c.ts);

		c.stamped = !err;
		if (err && err != -EEXIST)
			count_error(ERR_MAP_FULL);
	}
	calls.update(&t, &c);
	return 0;
}

int ret_out_queue(struct pt_regs *ctx)
{
	u32 t = tid();
	struct call *c = calls.lookup(&t);
	struct cam *cam;

	if (!c) {
		count_error(ERR_UNPAIRED);
		return 0;
	}
	if (PT_REGS_RC(ctx) == 0) {
		cam = get_cam(c->dev, c->arg);
		if (cam) {
			lock_xadd(&cam->frames_queued, 1);
			lock_xadd(&cam->out_depth, 1);
			bpf_get_current_comm(&cam->producer_comm,
					     sizeof(cam->producer_comm));
			observe_depth(cam->id, H_OUT_DEPTH, cam->out_depth);
		}
	} else if (c->stamped) {
		cam = get_cam(c->dev, c->arg);
		if (cam) {
			struct ts_key key = { .cam = cam->id, .kind = TS_OUT_QUEUED, .index = c->index };
			u64 *ts = stamps.lookup(&key);

			if (ts && *ts == c->ts)
				stamps.delete(&key);
		}
	}
	calls.delete(&t);
	return 0;
}

int entry_out_dequeue(struct pt_regs *ctx, unsigned int dev_nr, void *dev)
{
	struct call c = { .dev = (u64)dev, .arg = dev_nr };
	u32 t = tid();

	calls.update(&t, &c);
	return 0;
}

int ret_out_dequeue(struct pt_regs *ctx)
{
	u32 t = tid();
	struct call *c = calls.lookup(&t);
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
	calls.delete(&t);
	return 0;
}

/* ---- the frame path -------------------------------------------------- */

int entry_dispatch(struct pt_regs *ctx, unsigned int dev_nr, u32 out_index,
		   u32 cap_index, u32 bytes, struct vcam_out_buf_head *out)
{
	struct dispatch d = {
		.ts = bpf_ktime_get_ns(),
		.dev_nr = dev_nr,
		.out_index = out_index,
		.cap_index = cap_index,
		.bytes = bytes,
	};
	struct cam *cam;
	u32 t = tid();

	bpf_probe_read_kernel(&d.dev, sizeof(d.dev), &out->dev);
	/* The frame left the pending list just before this call */
	cam = get_cam(d.dev, dev_nr);
	if (cam) {
		d.cam = cam->id;
		d.queued_ts = stamp_take(d.cam, TS_OUT_QUEUED, out_index);
		lock_xadd(&cam->out_depth, -1);
		observe_depth(d.cam, H_OUT_DEPTH, cam->out_depth);
	}
	dispatches.update(&t, &d);
	return 0;
}

int entry_copy(struct pt_regs *ctx)
{
	u32 t = tid();
	struct dispatch *d = dispatches.lookup(&t);

	if (d)
		d->copy_ts = bpf_ktime_get_ns();
	return 0;
}

int ret_copy(struct pt_regs *ctx)
{
	u32 t = tid();
	struct dispatch *d = dispatches.lookup(&t);

	if (!d || !d->copy_ts) {
		count_error(ERR_UNPAIRED);
		return 0;
	}
	observe_ns(d->cam, H_COPY, bpf_ktime_get_ns() - d->copy_ts);
	return 0;
}

int ret_dispatch(struct pt_regs *ctx)
{
	u32 t = tid();
	struct dispatch *d = dispatches.lookup(&t);
	int path = PT_REGS_RC(ctx);
	struct cam *cam;

	if (!d) {
		count_error(ERR_UNPAIRED);
		return 0;
	}
	cam = get_cam(d->dev, d->dev_nr);
	if (cam) {
		/* Counted as the driver counts: an error wins over the path */
		if (path == PATH_ERROR || d->done_state == VB2_BUF_STATE_ERROR)
			lock_xadd(&cam->frames_errored, 1);
		else if (path == PATH_ZERO_COPY)
			lock_xadd(&cam->frames_zero_copy, 1);
		else
			lock_xadd(&cam->frames_copied, 1);
		if (path == PATH_COPY)
			lock_xadd(&cam->bytes_copied, d->bytes);
	}
	if (d->queued_ts)
		observe_ns(d->cam, H_DELIVERY, bpf_ktime_get_ns() - d->queued_ts);
	else
		count_error(ERR_UNPAIRED);
	dispatches.delete(&t);
	return 0;
}

/* ---- videobuf2 core, vcam's queues only ------------------------------ */

/* A capture buffer handed to the driver (vb2's __enqueue_in_driver) */
int on_vb2_buf_queue(struct bpf_raw_tracepoint_args *ctx)
{
	u64 dev = vcam_dev_of_queue((struct vb2_queue *)ctx->args[0]);
	struct cam *cam;

	if (!dev)
		return 0;
	cam = get_cam(dev, dev_nr_of(dev));
	if (cam) {
		lock_xadd(&cam->cap_depth, 1);
		observe_depth(cam->id, H_CAP_DEPTH, cam->cap_depth);
	}
	return 0;
}

int entry_buffer_done(struct pt_regs *ctx, struct vb2_buffer *vb,
		      enum vb2_buffer_state state)
{
	struct vb2_queue *q = NULL;
	struct dispatch *d;
	struct cam *cam;
	u32 index = 0;
	u64 dev, now;
	u32 t = tid();

	bpf_probe_read_kernel(&q, sizeof(q), &vb->vb2_queue);
	dev = vcam_dev_of_queue(q);
	if (!dev)
		return 0;
	bpf_probe_read_kernel(&index, sizeof(index), &vb->index);
	now = bpf_ktime_get_ns();

	cam = get_cam(dev, dev_nr_of(dev));
	if (!cam)
		return 0;
	lock_xadd(&cam->cap_depth, -1);
	observe_depth(cam->id, H_CAP_DEPTH, cam->cap_depth);

	d = dispatches.lookup(&t);
	if (d && d->dev == dev) {
		/* A delivery: the consumer will DQBUF this buffer */
		d->done_state = state;
		stamp_set(cam->id, TS_CAP_DONE, index, now);
		if (d->queued_ts)
			stamp_set(cam->id, TS_CAP_FRAME, index, d->queued_ts);
	}
	return 0;
}

/* The consumer took a buffer: vb2_core_dqbuf() */
int on_vb2_dqbuf(struct bpf_raw_tracepoint_args *ctx)
{
	u64 dev = vcam_dev_of_queue((struct vb2_queue *)ctx->args[0]);
	struct vb2_buffer *vb = (struct vb2_buffer *)ctx->args[1];
	u64 now = bpf_ktime_get_ns(), done, queued;
	struct cam *cam;
	u32 index = 0;

	if (!dev)
		return 0;
	cam = get_cam(dev, dev_nr_of(dev));
	if (!cam)
		return 0;
	bpf_get_current_comm(&cam->consumer_comm, sizeof(cam->consumer_comm));
	bpf_probe_read_kernel(&index, sizeof(index), &vb->index);
	done = stamp_take(cam->id, TS_CAP_DONE, index);
	queued = stamp_take(cam->id, TS_CAP_FRAME, index);
	if (done)
		observe_ns(cam->id, H_DEQUEUE, now - done);
	if (queued)
		observe_ns(cam->id, H_FRAME, now - queued);
	return 0;
}

static __always_inline int entry_stream(struct vb2_queue *q, u64 on)
{
	struct call c = { .dev = vcam_dev_of_queue(q), .arg = on };
	u32 t = tid();

	if (c.dev)
		calls.update(&t, &c);
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

int ret_core_stream(struct pt_regs *ctx)
{
	u32 t = tid();
	struct call *c = calls.lookup(&t);
	struct cam *cam;

	if (!c)
		return 0;	/* not a vcam queue */
	if (PT_REGS_RC(ctx) == 0) {
		cam = get_cam(c->dev, dev_nr_of(c->dev));
		if (cam)
			cam->streaming = c->arg;
	}
	calls.delete(&t);
	return 0;
}
