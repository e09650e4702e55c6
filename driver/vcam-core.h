/* SPDX-License-Identifier: GPL-2.0+ */
/*
 * vcam - internal definitions shared by the control node, the capture node
 * and the frame path
 */
#ifndef _VCAM_CORE_H
#define _VCAM_CORE_H

#include <linux/build_bug.h>
#include <linux/dma-fence.h>
#include <linux/iosys-map.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <media/v4l2-dev.h>
#include <media/v4l2-device.h>
#include <media/videobuf2-v4l2.h>

#include <uapi/linux/vcam.h>

#define VCAM_DRIVER_NAME	"vcam"

/* Default frame size and rate */
#define VCAM_DEF_WIDTH		640
#define VCAM_DEF_HEIGHT		480
#define VCAM_DEF_FPS		30
#define VCAM_MIN_FPS		1
#define VCAM_MAX_FPS		1000

/*
 * How long the frame path waits for a frame's fences (a GPU still writing
 * it) or a capture buffer's (a device still reading it). The wait is a
 * fence callback, never a blocked thread: a fence that never signals fails
 * one frame after this long, and nothing else waits for it.
 */
#define VCAM_FENCE_TIMEOUT_NS	(1000 * NSEC_PER_MSEC)

/*
 * How far ahead of now a producer's timestamp may be: a source that stamps
 * a frame with the time it is due (vivid does) may queue it a little
 * early; a timestamp from another clock is far off and refused.
 */
#define VCAM_TIMESTAMP_AHEAD_NS	NSEC_PER_SEC

/* Producer timestamps kept to measure the rate it delivers at */
#define VCAM_RATE_WINDOW	16

/*
 * Capture buffers a camera's memory limit must leave room for at CREATE:
 * one being filled while the consumer reads the other.
 */
#define VCAM_MIN_CAPTURE_BUFS	2

struct vcam_user;

struct vcam_device;

/**
 * struct vcam_format_info - a pixel format the camera can carry
 * @fourcc: V4L2 fourcc
 * @bpp: bits per pixel of the whole frame (all planes of one buffer); for a
 *	compressed format the worst case the buffer is sized for
 * @cpp: bytes per pixel of the first plane's line; 0 for a compressed format
 *	(no stride)
 * @hstep: the width must be a multiple of this
 * @vstep: the height must be a multiple of this
 * @compressed: the payload may be shorter than a full frame
 */
struct vcam_format_info {
	u32 fourcc;
	u8 bpp;
	u8 cpp;
	u8 hstep;
	u8 vstep;
	bool compressed;
};

/**
 * enum vcam_slot_state - where an output slot is
 * @VCAM_SLOT_IDLE: owned by the producer; may be queued
 * @VCAM_SLOT_QUEUED: waiting on &vcam_device.out_pending for a capture buffer
 * @VCAM_SLOT_ACTIVE: taken by the frame path, being delivered
 * @VCAM_SLOT_INFLIGHT: delivered zero-copy; the consumer may be reading the
 *	same memory through its capture buffer, so the slot is held until that
 *	buffer is queued again or streaming stops
 * @VCAM_SLOT_DONE: consumed, waiting on &vcam_device.out_done for DEQUEUE
 */
enum vcam_slot_state {
	VCAM_SLOT_IDLE,
	VCAM_SLOT_QUEUED,
	VCAM_SLOT_ACTIVE,
	VCAM_SLOT_INFLIGHT,
	VCAM_SLOT_DONE,
};

struct vcam_cap_buf;

/**
 * enum vcam_path - how a frame was delivered (observers rely on the values)
 * @VCAM_PATH_ZERO_COPY: the capture buffer imports the output DMA-BUF
 * @VCAM_PATH_COPY: the payload was copied by the CPU
 * @VCAM_PATH_ERROR: the capture buffer was completed with an error
 */
enum vcam_path {
	VCAM_PATH_ZERO_COPY = 0,
	VCAM_PATH_COPY = 1,
	VCAM_PATH_ERROR = 2,
};

/**
 * struct vcam_out_buf - one output slot of the producer
 * @dev: the camera
 * @list: entry in &vcam_device.out_pending or &vcam_device.out_done
 * @dbuf: the DMA-BUF of the frame, referenced from QUEUE until the slot is
 *	done; NULL otherwise
 * @last_dbuf: the DMA-BUF last queued into this slot, referenced until the
 *	slot is queued with another one or the camera goes away: the producer
 *	writes into it, so it is never a copy target
 * @last_map: @last_dbuf mapped for the CPU, made by the copy path at its
 *	first copy from it and kept until @last_dbuf changes: mapping and
 *	unmapping on every frame costs as much as copying a small one. Only the
 *	frame path maps it (while the slot is queued); it is unmapped where
 *	@last_dbuf is dropped
 * @own_dbuf: the slot's driver-allocated buffer, a DMA-BUF exported by vcam
 *	(vcam-slotbuf.c), or NULL until first used; set once with cmpxchg(),
 *	referenced until the control file is released
 * @cap: while %VCAM_SLOT_INFLIGHT, the capture buffer holding the frame
 * @timestamp: the frame's CLOCK_MONOTONIC timestamp in nanoseconds
 * @queued_ns: when VCAM_IOC_QUEUE accepted the frame (ktime_get_ns())
 * @index: the slot index
 * @length: the frame's payload in bytes
 * @state: see &enum vcam_slot_state
 *
 * All fields but @dev, @index and @own_dbuf are protected by
 * &vcam_device.slock.
 */
struct vcam_out_buf {
	struct vcam_device *dev;
	struct list_head list;
	struct dma_buf *dbuf;
	struct dma_buf *last_dbuf;
	struct iosys_map last_map;
	struct dma_buf *own_dbuf;
	struct vcam_cap_buf *cap;
	u64 timestamp;
	u64 queued_ns;
	u32 index;
	u32 length;
	enum vcam_slot_state state;
};

/**
 * struct vcam_cap_buf - a capture buffer
 * @vb: the vb2 buffer; must be first
 * @list: entry in &vcam_device.cap_queued while owned by the driver
 * @held: the output slot whose frame this buffer received zero-copy and still
 *	holds, until the consumer queues the buffer again; protected by
 *	&vcam_device.slock
 */
struct vcam_cap_buf {
	struct vb2_v4l2_buffer vb;
	struct list_head list;
	struct vcam_out_buf *held;
};

/**
 * struct vcam_stats - per-camera counters, exported in sysfs
 * @frames_queued: frames accepted by VCAM_IOC_QUEUE
 * @frames_dequeued: slots handed back by VCAM_IOC_DEQUEUE
 * @frames_zero_copy: frames delivered without moving pixels
 * @frames_copied: frames delivered by a CPU copy
 * @frames_errored: frames delivered with V4L2_BUF_FLAG_ERROR
 * @frames_dropped: frames no consumer received: still pending when the
 *	consumer stopped streaming
 * @bytes_copied: bytes moved by the copy path
 */
struct vcam_stats {
	u64 frames_queued;
	u64 frames_dequeued;
	u64 frames_zero_copy;
	u64 frames_copied;
	u64 frames_errored;
	u64 frames_dropped;
	u64 bytes_copied;
};

/**
 * struct vcam_device - one camera: a control file's capture device
 * @v4l2_dev: the V4L2 device; its refcount owns this structure, which is
 *	freed when the control file is closed and the last user of the video
 *	node is gone
 * @vdev: the capture video node
 * @queue: the capture vb2 queue
 * @lock: serializes the V4L2 ioctls of @vdev and the vb2 operations of
 *	@queue (it is both vdev->lock and queue->lock)
 * @slock: protects the buffer lists, the slot and capture buffer states,
 *	@wait, @streaming, @disconnected, @sequence, @status_changes,
 *	@last_timestamp, @stats, the rate window and the fence wait; never held
 *	across a copy, a DMA-BUF call or vb2_buffer_done()
 * @out_pending: slots queued by the producer, oldest first
 * @out_done: slots ready for DEQUEUE, oldest first
 * @cap_queued: capture buffers owned by the driver, oldest first
 * @cap_incoming: capture buffers of the QBUF in progress; the frame path
 *	gets them once it has returned (vcam_cap_hand_over()), so QBUF never
 *	reports a buffer that the frame path already completed
 * @wait: the control file's wait queue (DEQUEUE, WAIT, poll), woken when a
 *	slot becomes done or idle and when the status changes; NULL once the
 *	control file is closed. Wake it with vcam_wake().
 * @work: the frame path; pairs output frames with capture buffers. Queued
 *	with vcam_kick(); delayed only to end a fence wait at its deadline
 * @fence: the fence the frame path waits for, with @fence_cb added to it
 * @fence_cb: kicks the frame path when @fence signals
 * @fence_deadline: when the wait for the oldest frame's fences gives up
 *	(ktime_get_ns()); 0 while the frame path waits for none
 * @slots: the output slots
 * @nr_slots: number of valid entries of @slots
 * @fmt: the camera's format, fixed at creation
 * @finfo: description of @fmt.pixelformat
 * @card: the card label
 * @nr: the N of /dev/videoN
 * @streaming: the capture queue is streaming
 * @disconnected: the control file is gone; nothing is paired any more
 * @status_changes: how many times the status bits changed; poll reports
 *	EPOLLPRI to a control file that has not read the status since
 * @last_timestamp: the timestamp of the last frame queued; the next one may
 *	not be earlier
 * @sequence: sequence number of the next capture buffer
 * @requested_fps: the rate last asked for with S_PARM
 * @rate_ts: the producer timestamps of the last frames queued (ring)
 * @rate_count: number of valid entries in @rate_ts
 * @rate_head: index of the next entry of @rate_ts to write
 * @last_queue_ns: CLOCK_MONOTONIC time of the last QUEUE
 * @stats: the counters
 * @user: the creator's share of the camera limits, given back when the
 *	camera is freed (its video minor and memory are gone by then)
 * @cap_budget: bytes of MMAP capture buffers the camera may allocate: its
 *	memory limit less what its slots' buffers may take; fixed at CREATE
 */
struct vcam_device {
	struct v4l2_device v4l2_dev;
	struct video_device vdev;
	struct vb2_queue queue;
	struct vb2_mem_ops mem_ops;	/* vb2_vmalloc's, see vcam_attach_dmabuf() */
	struct mutex lock;		/* V4L2 ioctls and vb2 queue ops */
	spinlock_t slock;		/* lists, states, counters */
	struct list_head out_pending;
	struct list_head out_done;
	struct list_head cap_queued;
	struct list_head cap_incoming;
	wait_queue_head_t *wait;
	struct delayed_work work;
	struct dma_fence *fence;
	struct dma_fence_cb fence_cb;
	u64 fence_deadline;
	struct vcam_out_buf slots[VCAM_MAX_FRAMES];
	unsigned int nr_slots;
	struct v4l2_pix_format fmt;
	const struct vcam_format_info *finfo;
	char card[VCAM_LABEL_MAX];
	unsigned int nr;
	bool streaming;
	bool disconnected;
	u32 status_changes;
	u64 last_timestamp;
	u32 sequence;
	u32 requested_fps;
	u64 rate_ts[VCAM_RATE_WINDOW];
	unsigned int rate_count;
	unsigned int rate_head;
	u64 last_queue_ns;
	struct vcam_stats stats;
	struct vcam_user *user;
	u64 cap_budget;
};

/*
 * observe/vcam_probes.c reads cameras and slots without this header: it
 * finds @vdev and @queue through vcam's BTF, or, for a module built without
 * BTF, by these rules from the kernel types' BTF (observe/probes.py,
 * head_offsets()), and reads the first field of struct vcam_out_buf. Keep
 * them where they are.
 */
static_assert(offsetof(struct vcam_device, v4l2_dev) == 0);
static_assert(offsetof(struct vcam_device, vdev) ==
	      ALIGN(sizeof(struct v4l2_device), __alignof__(struct video_device)));
static_assert(offsetof(struct vcam_device, queue) ==
	      ALIGN(offsetof(struct vcam_device, vdev) + sizeof(struct video_device),
		    __alignof__(struct vb2_queue)));
static_assert(offsetof(struct vcam_out_buf, dev) == 0);

/**
 * struct vcam_config - a validated VCAM_IOC_CREATE request
 * @card: the card label
 * @fmt: the format
 * @finfo: description of @fmt.pixelformat
 * @nr_frames: number of output slots
 * @wait: the control file's wait queue
 * @user: the creator's share of the camera limits, taken by
 *	vcam_user_charge(); the camera owns it once created
 * @cap_budget: see &vcam_device.cap_budget
 */
struct vcam_config {
	char card[VCAM_LABEL_MAX];
	struct v4l2_pix_format fmt;
	const struct vcam_format_info *finfo;
	unsigned int nr_frames;
	wait_queue_head_t *wait;
	struct vcam_user *user;
	u64 cap_budget;
};

/* vcam-main.c: the misc device and the limits (module parameters) */
extern struct miscdevice vcam_misc;
u64 vcam_camera_mem_limit(void);
int vcam_user_charge(kuid_t uid, struct vcam_user **user);
void vcam_user_uncharge(struct vcam_user *user);

/* vcam-ctrl.c: the control node */
extern const struct file_operations vcam_ctrl_fops;

/* vcam-capture.c: formats, the capture node, camera lifetime */
const struct vcam_format_info *vcam_format_find(u32 fourcc);
unsigned int vcam_format_count(void);
const struct vcam_format_info *vcam_format_get(unsigned int index);
int vcam_format_fill(struct v4l2_pix_format *pix,
		     const struct vcam_format_info *finfo);
struct vcam_device *vcam_device_create(const struct vcam_config *cfg);
void vcam_device_free(unsigned int dev_nr, struct vcam_device *dev);
void vcam_device_destroy(struct vcam_device *dev);

/* vcam-slotbuf.c: the slots' driver-allocated DMA-BUFs */
struct dma_buf *vcam_slot_dbuf(struct vcam_device *dev, unsigned int index);
unsigned long vcam_slot_mem_size(struct vcam_device *dev);

/* vcam-queue.c: the capture queue and the frame path */
int vcam_queue_init(struct vcam_device *dev);
void vcam_kick(struct vcam_device *dev);
void vcam_wake(struct vcam_device *dev);
void vcam_fence_disarm(struct vcam_device *dev);
void vcam_frames_release(struct vcam_device *dev);
u64 vcam_status(struct vcam_device *dev);
u32 vcam_current_fps(struct vcam_device *dev);
bool vcam_producer_active(struct vcam_device *dev);
bool vcam_out_dequeue_ready(struct vcam_device *dev);
void vcam_cap_hand_over(struct vcam_device *dev);
bool vcam_out_queue_ready(struct vcam_device *dev);
void vcam_stats_read(struct vcam_device *dev, struct vcam_stats *stats);

/*
 * Observable functions: see the comment block at the top of vcam-queue.c.
 * They are global and noinline so that their names are stable symbols in
 * /proc/kallsyms that kprobes can attach to.
 */
int vcam_out_queue(unsigned int dev_nr, struct vcam_device *dev,
		   const struct vcam_ioc_queue *req);
int vcam_out_dequeue(unsigned int dev_nr, struct vcam_device *dev,
		     struct vcam_ioc_dequeue *res, bool nonblock);
void vcam_out_queued(unsigned int dev_nr, struct vcam_device *dev,
		     u32 out_index, u64 queued_ns);
void vcam_out_dequeued(unsigned int dev_nr, struct vcam_device *dev,
		       u32 out_index);
void vcam_out_dropped(unsigned int dev_nr, struct vcam_device *dev,
		      u32 out_index);
void vcam_frame_delivered(unsigned int dev_nr, struct vcam_device *dev,
			  u32 cap_index, enum vcam_path counted,
			  u32 bytes_copied, u64 queued_ns);
int vcam_dispatch(unsigned int dev_nr, u32 out_index, u32 cap_index,
		  u32 bytes, struct vcam_out_buf *out,
		  struct vcam_cap_buf *cap);
void vcam_zero_copy(unsigned int dev_nr, u32 out_index, u32 cap_index,
		    u32 bytes, struct vcam_out_buf *out,
		    struct vcam_cap_buf *cap);
int vcam_copy(unsigned int dev_nr, u32 out_index, u32 cap_index, u32 bytes,
	      struct vcam_out_buf *out, struct vcam_cap_buf *cap);
void vcam_out_release(unsigned int dev_nr, u32 out_index, u32 cap_index,
		      struct vcam_out_buf *out, struct dma_buf *dbuf);

#endif /* _VCAM_CORE_H */
