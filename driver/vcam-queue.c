// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam - the capture vb2 queue and the frame path
 *
 * The producer queues output slots (VCAM_IOC_QUEUE), the consumer queues
 * capture buffers (vb2 buf_queue). A work item, the frame path, pairs the
 * oldest queued output frame with a capture buffer and delivers it:
 *
 *  - zero-copy, when a queued capture buffer imports the very DMA-BUF of
 *    the output frame (whatever its place in the capture queue): only the
 *    payload size, timestamp and sequence are set. The slot then stays in
 *    flight until the consumer queues that capture buffer again or stops
 *    streaming, so the producer never gets back memory that a consumer may
 *    still be reading;
 *  - by a CPU copy otherwise, into the oldest queued capture buffer that
 *    does not share its memory with a frame still owned by the driver;
 *  - with V4L2_BUF_FLAG_ERROR when neither is possible. A short payload of
 *    an uncompressed format is delivered and flagged as an error too.
 *
 * Frames wait for a consumer: an output frame waits for a capture buffer,
 * and a producer that runs ahead runs out of slots (back-pressure). A
 * consumer's STREAMOFF ends what it was sent: frames still pending then are
 * dropped, and DEQUEUE gives their slots back with a length of 0, so the
 * next consumer never starts with frames made for the last one.
 *
 * A frame whose DMA-BUF has unsignalled write fences (a GPU still writing
 * it), or a copy target with unsignalled fences (a device still reading
 * it), waits: the frame path adds a callback to the fence and returns, and
 * the callback, or the deadline VCAM_FENCE_TIMEOUT_NS later, runs it again.
 * No ioctl and no close() ever waits for a fence.
 *
 * Observable functions. These are global, noinline, never cloned symbols
 * with stable names so that kprobes (observe/) can attach to them. Each takes the
 * device number (the N of /dev/videoN) first and the rest of its context in
 * scalar arguments that sit in registers. The ones named for an event that
 * happened (queued, dequeued, delivered) run only when it did, so an entry
 * probe alone sees it: no return probe, which costs twice as much.
 *
 *   vcam_out_queue(dev_nr, dev, req)
 *	VCAM_IOC_QUEUE handling; req is the &struct vcam_ioc_queue copied from
 *	user space (uAPI layout); returns 0 or -errno.
 *   vcam_out_dequeue(dev_nr, dev, res, nonblock)
 *	VCAM_IOC_DEQUEUE handling; fills the &struct vcam_ioc_dequeue res;
 *	returns 0 or -errno.
 *   vcam_out_queued(dev_nr, dev, out_index, queued_ns)
 *	an accepted QUEUE: the frame joins the pending list (slock held).
 *   vcam_out_dequeued(dev_nr, dev, out_index)
 *	a DEQUEUE that returns a slot (slock held).
 *   vcam_out_dropped(dev_nr, dev, out_index)
 *	a pending frame is dropped because the consumer stopped streaming; it
 *	leaves the pending list undelivered (slock held).
 *   vcam_frame_delivered(dev_nr, dev, cap_index, counted, bytes_copied,
 *			  queued_ns)
 *	one frame counted as the driver counts it (&enum vcam_path, an error
 *	whatever the path), before its capture buffer completes (slock held).
 *   vcam_dispatch(dev_nr, out_index, cap_index, bytes, out, cap)
 *	one paired frame: chooses the path, delivers, completes the capture
 *	buffer; returns the &enum vcam_path taken.
 *   vcam_zero_copy(dev_nr, out_index, cap_index, bytes, out, cap)
 *	the zero-copy delivery (metadata only).
 *   vcam_copy(dev_nr, out_index, cap_index, bytes, out, cap)
 *	the CPU copy of the payload (bytes long); returns 0 or -errno.
 *   vcam_out_release(dev_nr, out_index, cap_index, out, dbuf)
 *	an in-flight slot is released because its capture buffer came back.
 *   vcam_device_create(cfg)
 *	(vcam-capture.c) a camera is created; returns it, its node number in
 *	vdev.num, or an ERR_PTR. observe/ resets its state for the camera here.
 *   vcam_device_free(dev_nr, dev)
 *	(vcam-capture.c) the last reference to the camera is gone; its memory
 *	is freed. observe/ forgets the camera here.
 *
 * observe/ also finds vcam's own vb2 queues by their ops, the symbol
 * vcam_vb2_ops.
 */

#include <linux/dma-buf.h>
#include <linux/dma-direction.h>
#include <linux/dma-resv.h>
#include <linux/iosys-map.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/minmax.h>
#include <linux/slab.h>
#include <media/videobuf2-vmalloc.h>

#include "vcam-core.h"
#include "vcam-compat.h"

/* How long a producer counts as delivering after its last QUEUE */
#define VCAM_SIGNAL_TIMEOUT_NS	(2 * NSEC_PER_SEC)

static struct vcam_cap_buf *to_cap_buf(struct vb2_buffer *vb)
{
	return container_of(to_vb2_v4l2_buffer(vb), struct vcam_cap_buf, vb);
}

static struct dma_buf *vcam_cap_dbuf(struct vcam_cap_buf *cap)
{
	struct vb2_buffer *vb = &cap->vb.vb2_buf;

	return vb->memory == VB2_MEMORY_DMABUF ? vb->planes[0].dbuf : NULL;
}

/**
 * vcam_kick() - run the frame path now
 * @dev: the camera
 *
 * Also ends a delay armed for a fence deadline. Safe from any context,
 * including a fence callback.
 */
void vcam_kick(struct vcam_device *dev)
{
	mod_delayed_work(system_unbound_wq, &dev->work, 0);
}

/**
 * vcam_wake() - wake the control file's waiters, if it is still open
 * @dev: the camera
 *
 * Under &vcam_device.slock, so that vcam_device_destroy() can clear
 * &vcam_device.wait before the control file's memory goes away.
 */
void vcam_wake(struct vcam_device *dev)
{
	spin_lock(&dev->slock);
	if (dev->wait)
		wake_up_interruptible(dev->wait);
	spin_unlock(&dev->slock);
}

/* ---------------------------------------------------------------------- */
/* Status and rate                                                         */

/**
 * vcam_status() - the VCAM_STATUS_* bits of a camera
 * @dev: the camera
 *
 * Return: %VCAM_STATUS_STREAMING while the capture queue streams, else
 * %VCAM_STATUS_IDLE.
 */
u64 vcam_status(struct vcam_device *dev)
{
	return READ_ONCE(dev->streaming) ? VCAM_STATUS_STREAMING :
					   VCAM_STATUS_IDLE;
}

/* Called with dev->slock held */
static void vcam_rate_sample(struct vcam_device *dev, u64 ts, u64 now)
{
	unsigned int newest = (dev->rate_head + VCAM_RATE_WINDOW - 1) %
			      VCAM_RATE_WINDOW;

	/* A pause or a clock jump starts a new measurement */
	if (dev->rate_count &&
	    (ts <= dev->rate_ts[newest] ||
	     now - dev->last_queue_ns > VCAM_SIGNAL_TIMEOUT_NS))
		dev->rate_count = 0;

	dev->rate_ts[dev->rate_head] = ts;
	dev->rate_head = (dev->rate_head + 1) % VCAM_RATE_WINDOW;
	if (dev->rate_count < VCAM_RATE_WINDOW)
		dev->rate_count++;
	dev->last_queue_ns = now;
}

/**
 * vcam_current_fps() - the frame rate G_PARM reports
 * @dev: the camera
 *
 * While the producer delivers, this is the rate measured from the
 * timestamps of the last frames it queued (up to %VCAM_RATE_WINDOW), rounded
 * to whole frames per second. Back-pressure ties the producer to the
 * consumer, so it is also the rate the consumer gets. Before the producer
 * delivered two frames, or when it has been silent for a while, it is the
 * rate last requested with S_PARM (30 by default).
 *
 * Return: frames per second, %VCAM_MIN_FPS to %VCAM_MAX_FPS.
 */
u32 vcam_current_fps(struct vcam_device *dev)
{
	u64 now = ktime_get_ns();
	u64 oldest, newest, span;
	unsigned int count;
	u32 fps;

	spin_lock(&dev->slock);
	fps = dev->requested_fps;
	count = dev->rate_count;
	if (count >= 2 && now - dev->last_queue_ns <= VCAM_SIGNAL_TIMEOUT_NS) {
		newest = dev->rate_ts[(dev->rate_head + VCAM_RATE_WINDOW - 1) %
				      VCAM_RATE_WINDOW];
		oldest = dev->rate_ts[(dev->rate_head + VCAM_RATE_WINDOW -
				       count) % VCAM_RATE_WINDOW];
		span = newest - oldest;
		fps = div64_u64((u64)(count - 1) * NSEC_PER_SEC + span / 2,
				span);
	}
	spin_unlock(&dev->slock);

	return clamp_t(u32, fps, VCAM_MIN_FPS, VCAM_MAX_FPS);
}

/**
 * vcam_producer_active() - whether the producer is delivering frames
 * @dev: the camera
 *
 * Return: true while frames are waiting or in flight, or the producer queued
 * one recently. VIDIOC_ENUMINPUT reports V4L2_IN_ST_NO_SIGNAL otherwise.
 */
bool vcam_producer_active(struct vcam_device *dev)
{
	bool active;

	spin_lock(&dev->slock);
	active = !list_empty(&dev->out_pending) ||
		 (dev->last_queue_ns &&
		  ktime_get_ns() - dev->last_queue_ns <= VCAM_SIGNAL_TIMEOUT_NS);
	spin_unlock(&dev->slock);

	return active;
}

/**
 * vcam_stats_read() - a consistent snapshot of the counters
 * @dev: the camera
 * @stats: where to store it
 */
void vcam_stats_read(struct vcam_device *dev, struct vcam_stats *stats)
{
	spin_lock(&dev->slock);
	*stats = dev->stats;
	spin_unlock(&dev->slock);
}

/* ---------------------------------------------------------------------- */
/* Output slots: the producer side                                         */

/*
 * Called with dev->slock held: is @dbuf memory the producer writes frames
 * into? Copying a frame there would overwrite another frame, or race the
 * producer refilling it.
 */
static bool vcam_dbuf_is_producers(struct vcam_device *dev,
				   struct dma_buf *dbuf)
{
	unsigned int i;

	if (!dbuf)
		return false;
	for (i = 0; i < dev->nr_slots; i++)
		if (dev->slots[i].last_dbuf == dbuf)
			return true;
	return false;
}

/* Called with dev->slock held: is @dbuf held by another slot? */
static bool vcam_dbuf_in_use(struct vcam_device *dev, struct dma_buf *dbuf)
{
	unsigned int i;

	for (i = 0; i < dev->nr_slots; i++)
		if (dev->slots[i].dbuf == dbuf)
			return true;
	return false;
}

/**
 * vcam_out_queued() - a frame joins the pending list
 * @dev_nr: the N of /dev/videoN
 * @dev: the camera
 * @out_index: the slot, filled in by VCAM_IOC_QUEUE
 * @queued_ns: when the QUEUE was accepted (ktime_get_ns())
 *
 * Called with &vcam_device.slock held, so an observer sees this before the
 * frame path can take the frame. Only an accepted QUEUE gets here.
 */
noinline __noclone void vcam_out_queued(unsigned int dev_nr,
					struct vcam_device *dev,
					u32 out_index, u64 queued_ns)
{
	struct vcam_out_buf *out = &dev->slots[out_index];

	lockdep_assert_held(&dev->slock);
	out->queued_ns = queued_ns;
	out->state = VCAM_SLOT_QUEUED;
	list_add_tail(&out->list, &dev->out_pending);
	dev->stats.frames_queued++;
	vcam_rate_sample(dev, out->timestamp, queued_ns);
}

/**
 * vcam_out_dequeued() - a done slot goes back to the producer
 * @dev_nr: the N of /dev/videoN
 * @dev: the camera
 * @out_index: the slot, on &vcam_device.out_done
 *
 * Called with &vcam_device.slock held. Only a DEQUEUE that returns a slot
 * gets here.
 */
noinline __noclone void vcam_out_dequeued(unsigned int dev_nr,
					  struct vcam_device *dev,
					  u32 out_index)
{
	struct vcam_out_buf *out = &dev->slots[out_index];

	lockdep_assert_held(&dev->slock);
	list_del(&out->list);
	out->state = VCAM_SLOT_IDLE;
	dev->stats.frames_dequeued++;
}

/**
 * vcam_out_dropped() - a pending frame is dropped undelivered
 * @dev_nr: the N of /dev/videoN
 * @dev: the camera
 * @out_index: the slot, on &vcam_device.out_pending
 *
 * Called with &vcam_device.slock held when the consumer stops streaming:
 * the slot goes to &vcam_device.out_done with a length of 0, which is how
 * DEQUEUE tells the producer that nobody received the frame.
 */
noinline __noclone void vcam_out_dropped(unsigned int dev_nr,
					 struct vcam_device *dev,
					 u32 out_index)
{
	struct vcam_out_buf *out = &dev->slots[out_index];

	lockdep_assert_held(&dev->slock);
	list_move_tail(&out->list, &dev->out_done);
	out->state = VCAM_SLOT_DONE;
	out->length = 0;
	dev->stats.frames_dropped++;
}

/**
 * vcam_out_queue() - VCAM_IOC_QUEUE: queue a frame into an output slot
 * @dev_nr: the N of /dev/videoN
 * @dev: the camera
 * @req: the request, copied from user space
 *
 * Takes a reference to the DMA-BUF that is held until the slot is done.
 *
 * Return: 0; -EINVAL for garbage in @req->reserved, a slot out of range, a
 * payload larger than a frame, an fd that is not a DMA-BUF or one too small
 * for the frame, a timestamp more than %VCAM_TIMESTAMP_AHEAD_NS ahead or
 * earlier than the last frame's (capture timestamps are CLOCK_MONOTONIC and
 * never go back); -EBADF for a bad fd; -EBUSY if the slot, or another slot
 * with the same DMA-BUF, is still queued; -ENOMEM if the slot's own buffer
 * (%VCAM_QUEUE_FD_DRIVER, vcam_slot_dbuf()) cannot be allocated; -ENODEV
 * once the camera is gone.
 */
noinline __noclone int vcam_out_queue(unsigned int dev_nr,
				      struct vcam_device *dev,
				      const struct vcam_ioc_queue *req)
{
	u32 sizeimage = dev->fmt.sizeimage;
	struct dma_buf *old_dbuf = NULL;
	struct iosys_map old_map = {};
	struct vcam_out_buf *out;
	struct dma_buf *dbuf;
	u32 length, need;
	u64 now;
	int ret;

	if (req->reserved || req->index >= dev->nr_slots)
		return -EINVAL;
	length = req->length ? req->length : sizeimage;
	if (length > sizeimage)
		return -EINVAL;

	if (req->fd == VCAM_QUEUE_FD_DRIVER) {
		dbuf = vcam_slot_dbuf(dev, req->index);
		if (IS_ERR(dbuf))
			return PTR_ERR(dbuf);
		get_dma_buf(dbuf);
	} else {
		dbuf = dma_buf_get((int)req->fd);
		if (IS_ERR(dbuf))
			return PTR_ERR(dbuf);
	}

	need = dev->finfo->compressed ? length : sizeimage;
	if (dbuf->size < need) {
		ret = -EINVAL;
		goto put_dbuf;
	}

	now = ktime_get_ns();
	out = &dev->slots[req->index];

	spin_lock(&dev->slock);
	if (dev->disconnected) {
		ret = -ENODEV;
	} else if (req->timestamp > now + VCAM_TIMESTAMP_AHEAD_NS ||
		   (req->timestamp && req->timestamp < dev->last_timestamp)) {
		ret = -EINVAL;
	} else if (out->state != VCAM_SLOT_IDLE ||
		   vcam_dbuf_in_use(dev, dbuf)) {
		ret = -EBUSY;
	} else {
		if (dbuf != out->last_dbuf) {
			old_dbuf = out->last_dbuf;
			old_map = out->last_map;
			iosys_map_clear(&out->last_map);
			out->last_dbuf = dbuf;
			get_dma_buf(dbuf);
		}
		out->dbuf = dbuf;
		out->length = length;
		/* "Now", unless the last frame was stamped a little ahead */
		out->timestamp = req->timestamp ?: max(now, dev->last_timestamp);
		dev->last_timestamp = out->timestamp;
		vcam_out_queued(dev_nr, dev, req->index, now);
		ret = 0;
	}
	spin_unlock(&dev->slock);
	if (ret)
		goto put_dbuf;

	if (old_dbuf) {
		if (!iosys_map_is_null(&old_map))
			vcam_dma_buf_vunmap(old_dbuf, &old_map);
		dma_buf_put(old_dbuf);
	}
	vcam_kick(dev);
	return 0;

put_dbuf:
	dma_buf_put(dbuf);
	return ret;
}

/**
 * vcam_out_dequeue_ready() - whether VCAM_IOC_DEQUEUE would not block
 * @dev: the camera
 *
 * Return: true if a slot is done.
 */
bool vcam_out_dequeue_ready(struct vcam_device *dev)
{
	bool ready;

	spin_lock(&dev->slock);
	ready = !list_empty(&dev->out_done);
	spin_unlock(&dev->slock);

	return ready;
}

/**
 * vcam_out_queue_ready() - whether a slot is free for VCAM_IOC_QUEUE
 * @dev: the camera
 *
 * Return: true if a slot is owned by the producer.
 */
bool vcam_out_queue_ready(struct vcam_device *dev)
{
	bool ready = false;
	unsigned int i;

	spin_lock(&dev->slock);
	for (i = 0; i < dev->nr_slots && !ready; i++)
		ready = dev->slots[i].state == VCAM_SLOT_IDLE;
	spin_unlock(&dev->slock);

	return ready;
}

/**
 * vcam_out_dequeue() - VCAM_IOC_DEQUEUE: take back a consumed output slot
 * @dev_nr: the N of /dev/videoN
 * @dev: the camera
 * @res: filled with the slot, its payload and timestamp
 * @nonblock: fail with -EAGAIN instead of waiting
 *
 * A slot whose frame was dropped (vcam_out_dropped()) comes back with a
 * length of 0.
 *
 * Return: 0, -EAGAIN, or -ERESTARTSYS when a signal interrupted the wait.
 */
noinline __noclone int vcam_out_dequeue(unsigned int dev_nr,
					struct vcam_device *dev,
					struct vcam_ioc_dequeue *res,
					bool nonblock)
{
	struct vcam_out_buf *out;
	int ret;

	for (;;) {
		spin_lock(&dev->slock);
		out = list_first_entry_or_null(&dev->out_done,
					       struct vcam_out_buf, list);
		if (out) {
			res->index = out->index;
			res->length = out->length;
			res->timestamp = out->timestamp;
			vcam_out_dequeued(dev_nr, dev, out->index);
			/* A slot is free: pollers waiting for EPOLLOUT */
			if (dev->wait)
				wake_up_interruptible(dev->wait);
		}
		spin_unlock(&dev->slock);
		if (out)
			return 0;

		if (nonblock)
			return -EAGAIN;
		/* An ioctl of the control file: its wait queue is there */
		ret = wait_event_interruptible(*dev->wait,
					       vcam_out_dequeue_ready(dev));
		if (ret)
			return ret;
	}
}

/**
 * vcam_out_release() - hand an in-flight slot back to the producer
 * @dev_nr: the N of /dev/videoN
 * @out_index: the slot
 * @cap_index: the capture buffer that held its frame
 * @out: the slot, already moved to &vcam_device.out_done
 * @dbuf: the DMA-BUF reference the slot held
 *
 * Called when the consumer queues the capture buffer again or stops
 * streaming: from then on it no longer reads the frame's memory.
 */
noinline __noclone void
vcam_out_release(unsigned int dev_nr, u32 out_index, u32 cap_index,
		 struct vcam_out_buf *out, struct dma_buf *dbuf)
{
	dma_buf_put(dbuf);
	vcam_wake(out->dev);
}

/**
 * vcam_frames_release() - drop every frame still owned by the driver
 * @dev: the camera, disconnected, with the frame path stopped
 *
 * Called when the control file is closed: nobody can dequeue any more.
 * Capture buffers still queued stay on &vcam_device.cap_queued until the
 * consumer stops streaming; they no longer hold any slot.
 */
void vcam_frames_release(struct vcam_device *dev)
{
	struct dma_buf *dbufs[2 * VCAM_MAX_FRAMES];
	unsigned int i, n = 0;

	/* Nothing maps or queues any more: unmapping may sleep, so first */
	for (i = 0; i < dev->nr_slots; i++) {
		struct vcam_out_buf *out = &dev->slots[i];

		if (!iosys_map_is_null(&out->last_map))
			vcam_dma_buf_vunmap(out->last_dbuf, &out->last_map);
		iosys_map_clear(&out->last_map);
	}

	spin_lock(&dev->slock);
	for (i = 0; i < dev->nr_slots; i++) {
		struct vcam_out_buf *out = &dev->slots[i];

		if (out->dbuf)
			dbufs[n++] = out->dbuf;
		if (out->last_dbuf)
			dbufs[n++] = out->last_dbuf;
		out->last_dbuf = NULL;
		if (out->cap)
			out->cap->held = NULL;
		out->dbuf = NULL;
		out->cap = NULL;
		out->state = VCAM_SLOT_IDLE;
	}
	INIT_LIST_HEAD(&dev->out_pending);
	INIT_LIST_HEAD(&dev->out_done);
	spin_unlock(&dev->slock);

	while (n)
		dma_buf_put(dbufs[--n]);

	/* Mappings and exported fds hold references of their own */
	for (i = 0; i < dev->nr_slots; i++) {
		if (dev->slots[i].own_dbuf)
			dma_buf_put(dev->slots[i].own_dbuf);
		dev->slots[i].own_dbuf = NULL;
	}
}

/* ---------------------------------------------------------------------- */
/* The frame path                                                          */

/**
 * vcam_zero_copy() - deliver a frame whose memory the capture buffer shares
 * @dev_nr: the N of /dev/videoN
 * @out_index: the output slot
 * @cap_index: the capture buffer
 * @bytes: the payload
 * @out: the output slot
 * @cap: the capture buffer; it imports @out's DMA-BUF
 *
 * No pixel moves: the payload size is all there is to set. The slot is put
 * in flight by vcam_dispatch().
 */
noinline __noclone void vcam_zero_copy(unsigned int dev_nr, u32 out_index,
				       u32 cap_index, u32 bytes,
				       struct vcam_out_buf *out,
				       struct vcam_cap_buf *cap)
{
	vb2_set_plane_payload(&cap->vb.vb2_buf, 0, bytes);
}

/**
 * vcam_copy() - copy a frame into a capture buffer with the CPU
 * @dev_nr: the N of /dev/videoN
 * @out_index: the output slot
 * @cap_index: the capture buffer
 * @bytes: the payload to copy
 * @out: the output slot
 * @cap: the capture buffer
 *
 * Return: 0; -EBUSY when the capture buffer is memory the producer writes
 * frames into; -ETIMEDOUT when a device still reads it; or -errno when one
 * side cannot be mapped by the CPU.
 */
noinline __noclone int vcam_copy(unsigned int dev_nr, u32 out_index,
				 u32 cap_index, u32 bytes,
				 struct vcam_out_buf *out,
				 struct vcam_cap_buf *cap)
{
	struct vb2_buffer *vb = &cap->vb.vb2_buf;
	struct dma_buf *cap_dbuf = vcam_cap_dbuf(cap);
	void *vaddr;
	int ret;

	/* vcam_fences_ready() waited; past its deadline, fail the frame */
	if (cap_dbuf && !dma_resv_test_signaled(cap_dbuf->resv,
						DMA_RESV_USAGE_READ))
		return -ETIMEDOUT;
	if (cap_dbuf) {
		bool producers;

		spin_lock(&out->dev->slock);
		producers = vcam_dbuf_is_producers(out->dev, cap_dbuf);
		spin_unlock(&out->dev->slock);
		if (producers)
			return -EBUSY;
	}

	vaddr = vb2_plane_vaddr(vb, 0);
	if (!vaddr || vb2_plane_size(vb, 0) < bytes)
		return -EFAULT;

	/* out->dbuf is out->last_dbuf while the slot is queued */
	if (iosys_map_is_null(&out->last_map)) {
		ret = vcam_dma_buf_vmap(out->dbuf, &out->last_map);
		if (ret)
			return ret;
	}

	ret = dma_buf_begin_cpu_access(out->dbuf, DMA_FROM_DEVICE);
	if (ret)
		return ret;
	if (cap_dbuf) {
		ret = dma_buf_begin_cpu_access(cap_dbuf, DMA_TO_DEVICE);
		if (ret)
			goto end_out_access;
	}

	iosys_map_memcpy_from(vaddr, &out->last_map, 0, bytes);
	vb2_set_plane_payload(vb, 0, bytes);

	if (cap_dbuf)
		dma_buf_end_cpu_access(cap_dbuf, DMA_TO_DEVICE);
end_out_access:
	dma_buf_end_cpu_access(out->dbuf, DMA_FROM_DEVICE);
	return ret;
}

/**
 * vcam_frame_delivered() - count a delivered frame
 * @dev_nr: the N of /dev/videoN
 * @dev: the camera
 * @cap_index: the capture buffer that received it
 * @counted: what the frame counts as: %VCAM_PATH_ERROR when the capture
 *	buffer completes with an error, whatever the path, else the path
 * @bytes_copied: the payload the CPU copied, 0 on the zero-copy path
 * @queued_ns: when VCAM_IOC_QUEUE accepted the frame, for observers to
 *	time the delivery against
 *
 * Called with &vcam_device.slock held by vcam_dispatch(), before the
 * capture buffer completes: an observer sees this before the consumer can
 * dequeue the buffer.
 */
noinline __noclone void vcam_frame_delivered(unsigned int dev_nr,
					     struct vcam_device *dev,
					     u32 cap_index,
					     enum vcam_path counted,
					     u32 bytes_copied, u64 queued_ns)
{
	lockdep_assert_held(&dev->slock);
	if (counted == VCAM_PATH_ERROR)
		dev->stats.frames_errored++;
	else if (counted == VCAM_PATH_ZERO_COPY)
		dev->stats.frames_zero_copy++;
	else
		dev->stats.frames_copied++;
	dev->stats.bytes_copied += bytes_copied;
}

/**
 * vcam_dispatch() - deliver one paired frame and complete the capture buffer
 * @dev_nr: the N of /dev/videoN
 * @out_index: the output slot
 * @cap_index: the capture buffer
 * @bytes: the payload
 * @out: the output slot, %VCAM_SLOT_ACTIVE
 * @cap: the capture buffer, taken off &vcam_device.cap_queued
 *
 * Return: the &enum vcam_path taken.
 */
noinline __noclone int vcam_dispatch(unsigned int dev_nr, u32 out_index,
				     u32 cap_index, u32 bytes,
				     struct vcam_out_buf *out,
				     struct vcam_cap_buf *cap)
{
	struct vcam_device *dev = out->dev;
	struct vb2_buffer *vb = &cap->vb.vb2_buf;
	struct dma_buf *put = NULL;
	bool error = false;
	enum vcam_path path;

	if (!dev->finfo->compressed && bytes < dev->fmt.sizeimage)
		error = true;

	if (!dma_resv_test_signaled(out->dbuf->resv, DMA_RESV_USAGE_WRITE)) {
		/* Still written after the fence deadline: hand out none of it */
		vb2_set_plane_payload(vb, 0, 0);
		path = VCAM_PATH_ERROR;
		error = true;
	} else if (vcam_cap_dbuf(cap) == out->dbuf) {
		vcam_zero_copy(dev_nr, out_index, cap_index, bytes, out, cap);
		path = VCAM_PATH_ZERO_COPY;
	} else if (!vcam_copy(dev_nr, out_index, cap_index, bytes, out, cap)) {
		path = VCAM_PATH_COPY;
	} else {
		vb2_set_plane_payload(vb, 0, 0);
		path = VCAM_PATH_ERROR;
		error = true;
	}

	vb->timestamp = out->timestamp;
	cap->vb.field = V4L2_FIELD_NONE;

	spin_lock(&dev->slock);
	cap->vb.sequence = dev->sequence++;
	vcam_frame_delivered(dev_nr, dev, cap_index,
			     error ? VCAM_PATH_ERROR : path,
			     path == VCAM_PATH_COPY ? bytes : 0,
			     out->queued_ns);

	if (path == VCAM_PATH_ZERO_COPY) {
		/* Held until the consumer gives the capture buffer back */
		out->state = VCAM_SLOT_INFLIGHT;
		out->cap = cap;
		cap->held = out;
	} else {
		put = out->dbuf;
		out->dbuf = NULL;
		out->state = VCAM_SLOT_DONE;
		list_add_tail(&out->list, &dev->out_done);
	}
	spin_unlock(&dev->slock);

	vb2_buffer_done(vb, error ? VB2_BUF_STATE_ERROR : VB2_BUF_STATE_DONE);
	if (path != VCAM_PATH_ZERO_COPY) {
		if (put)
			dma_buf_put(put);
		vcam_wake(dev);
	}
	return path;
}

/*
 * Called with dev->slock held: the capture buffer for a copy. The oldest one
 * whose memory is not the producer's; failing that, the oldest one, which
 * vcam_copy() then refuses, so it completes with the error flag and the
 * frame goes back to the producer, neither written nor lost.
 */
static struct vcam_cap_buf *vcam_copy_target(struct vcam_device *dev)
{
	struct vcam_cap_buf *cap;
	struct dma_buf *dbuf;

	list_for_each_entry(cap, &dev->cap_queued, list) {
		dbuf = vcam_cap_dbuf(cap);
		if (!dbuf || !vcam_dbuf_is_producers(dev, dbuf))
			return cap;
	}
	return list_first_entry(&dev->cap_queued, struct vcam_cap_buf, list);
}

/*
 * Called with dev->slock held while streaming: does a capture buffer,
 * queued or held by the consumer, import @dbuf? vb2 frees buffers only
 * after stop_streaming, which waits for slock, so they stay while we look.
 * A buffer vb2 is importing into may show its old DMA-BUF or none: the
 * frame path then waits or copies, neither of which loses a frame.
 */
static bool vcam_dbuf_imported(struct vcam_device *dev, struct dma_buf *dbuf)
{
	struct vb2_queue *q = &dev->queue;
	struct vb2_buffer *vb;
	unsigned int i;

	if (!dbuf)
		return false;
	for (i = 0; i < vcam_vb2_buffer_indexes(q); i++) {
		vb = vb2_get_buffer(q, i);
		if (vb && vcam_cap_dbuf(to_cap_buf(vb)) == dbuf)
			return true;
	}
	return false;
}

/*
 * Called with dev->slock held: the next pair, left on the queues. The
 * oldest output frame, and the capture buffer that imports its DMA-BUF if
 * one is queued, whatever its position, else the copy target. When the only
 * candidates are the producer's own buffers but the consumer holds the one
 * importing this frame, wait for it to come back rather than fail the frame.
 */
static bool vcam_pair_peek(struct vcam_device *dev, struct vcam_out_buf **outp,
			   struct vcam_cap_buf **capp)
{
	struct vcam_cap_buf *cap, *found = NULL;
	struct vcam_out_buf *out;

	if (!dev->streaming || dev->disconnected ||
	    list_empty(&dev->out_pending) || list_empty(&dev->cap_queued))
		return false;

	out = list_first_entry(&dev->out_pending, struct vcam_out_buf, list);
	list_for_each_entry(cap, &dev->cap_queued, list) {
		if (vcam_cap_dbuf(cap) == out->dbuf) {
			found = cap;
			break;
		}
	}
	if (!found) {
		found = vcam_copy_target(dev);
		if (vcam_dbuf_is_producers(dev, vcam_cap_dbuf(found)) &&
		    vcam_dbuf_imported(dev, out->dbuf))
			return false;
	}

	*outp = out;
	*capp = found;
	return true;
}

/* A fence of @dbuf's of @usage that has not signalled, referenced; or NULL */
static struct dma_fence *vcam_unsignalled_fence(struct dma_buf *dbuf,
						enum dma_resv_usage usage)
{
	struct dma_resv_iter cursor;
	struct dma_fence *fence, *found = NULL;

	dma_resv_iter_begin(&cursor, dbuf->resv, usage);
	dma_resv_for_each_fence_unlocked(&cursor, fence) {
		if (!dma_fence_is_signaled(fence)) {
			found = dma_fence_get(fence);
			break;
		}
	}
	dma_resv_iter_end(&cursor);
	return found;
}

static void vcam_fence_signalled(struct dma_fence *fence,
				 struct dma_fence_cb *cb)
{
	vcam_kick(container_of(cb, struct vcam_device, fence_cb));
}

/**
 * vcam_fence_disarm() - drop the frame path's fence callback, if any
 * @dev: the camera
 *
 * The frame path calls this each time it runs, and arms a new callback if
 * it still waits; STREAMOFF and the camera's end call it once the frame path
 * can no longer arm one. Once it returns, the callback is not running.
 */
void vcam_fence_disarm(struct vcam_device *dev)
{
	struct dma_fence *fence;

	spin_lock(&dev->slock);
	fence = dev->fence;
	dev->fence = NULL;
	spin_unlock(&dev->slock);

	if (fence) {
		dma_fence_remove_callback(fence, &dev->fence_cb);
		dma_fence_put(fence);
	}
}

/*
 * Whether the pair's memory is ready: the frame written (its DMA-BUF's write
 * fences signalled) and, for a copy, the target read by every device that
 * reads it (all its fences). If not, arm a callback on one unsignalled fence
 * and a delayed run at the deadline, and return false: the frame path runs
 * again when either comes. Past the deadline, return true: vcam_dispatch()
 * then fails the frame.
 */
static bool vcam_fences_ready(struct vcam_device *dev,
			      struct vcam_out_buf *out, struct vcam_cap_buf *cap)
{
	struct dma_buf *cap_dbuf = vcam_cap_dbuf(cap);
	struct dma_fence *fence;
	bool signalled = false;
	u64 now, left;

	fence = vcam_unsignalled_fence(out->dbuf, DMA_RESV_USAGE_WRITE);
	if (!fence && cap_dbuf && cap_dbuf != out->dbuf)
		fence = vcam_unsignalled_fence(cap_dbuf, DMA_RESV_USAGE_READ);
	if (!fence)
		return true;

	now = ktime_get_ns();
	spin_lock(&dev->slock);
	if (!dev->fence_deadline)
		dev->fence_deadline = now + VCAM_FENCE_TIMEOUT_NS;
	left = dev->fence_deadline > now ? dev->fence_deadline - now : 0;
	if (left && !dev->fence && dev->streaming && !dev->disconnected) {
		if (dma_fence_add_callback(fence, &dev->fence_cb,
					   vcam_fence_signalled))
			signalled = true;	/* -ENOENT: meanwhile */
		else
			swap(dev->fence, fence);
	}
	spin_unlock(&dev->slock);
	if (fence)
		dma_fence_put(fence);

	if (!left)
		return true;
	if (signalled)
		vcam_kick(dev);
	else
		queue_delayed_work(system_unbound_wq, &dev->work,
				   nsecs_to_jiffies(left) + 1);
	return false;
}

/*
 * Take the next pair off the queues, once its memory is ready. Only the
 * frame path takes entries off out_pending and cap_queued while streaming
 * (STREAMOFF and the camera's end first stop it and wait for it), so what
 * vcam_pair_peek() chose is still there after the unlocked fence check.
 */
static bool vcam_pair_next(struct vcam_device *dev, struct vcam_out_buf **outp,
			   struct vcam_cap_buf **capp)
{
	struct vcam_out_buf *out;
	struct vcam_cap_buf *cap;
	bool ok;

	spin_lock(&dev->slock);
	ok = vcam_pair_peek(dev, &out, &cap);
	spin_unlock(&dev->slock);
	if (!ok || !vcam_fences_ready(dev, out, cap))
		return false;

	spin_lock(&dev->slock);
	ok = dev->streaming && !dev->disconnected;
	if (ok) {
		list_del(&out->list);
		out->state = VCAM_SLOT_ACTIVE;
		list_del(&cap->list);
		dev->fence_deadline = 0;
	}
	spin_unlock(&dev->slock);

	*outp = out;
	*capp = cap;
	return ok;
}

static void vcam_frame_work(struct work_struct *work)
{
	struct vcam_device *dev = container_of(to_delayed_work(work),
					       struct vcam_device, work);
	struct vcam_out_buf *out;
	struct vcam_cap_buf *cap;

	vcam_fence_disarm(dev);
	while (vcam_pair_next(dev, &out, &cap))
		vcam_dispatch(dev->nr, out->index, cap->vb.vb2_buf.index,
			      out->length, out, cap);
}

/* ---------------------------------------------------------------------- */
/* vb2 queue operations                                                    */

/*
 * Bytes of the MMAP buffers the queue has now (vb2 rounds them to pages).
 * Called by vb2 with the queue's lock held, which every change to its
 * buffers takes too.
 */
static u64 vcam_cap_mmap_bytes(struct vcam_device *dev)
{
	struct vb2_queue *q = &dev->queue;
	struct vb2_buffer *vb;
	unsigned int i;
	u64 bytes = 0;

	if (q->memory != VB2_MEMORY_MMAP)
		return 0;
	for (i = 0; i < vcam_vb2_buffer_indexes(q); i++) {
		vb = vb2_get_buffer(q, i);
		if (vb && vb->planes[0].mem_priv)
			bytes += PAGE_ALIGN((u64)vb->planes[0].length);
	}
	return bytes;
}

/*
 * MMAP buffers are the driver's memory, so they count against the camera's
 * memory limit: vb2 gets as many as fit (REQBUFS and CREATE_BUFS may return
 * fewer than asked) and -ENOMEM when not even one does. USERPTR and DMABUF
 * memory belongs to someone else and is not counted. vb2 sets queue.memory
 * before calling this, and REQBUFS frees the old buffers first. The second
 * call vb2 makes after an allocation failed sees the buffers it did make
 * counted: under real memory pressure it may then answer -ENOMEM.
 */
static int vcam_queue_setup(struct vb2_queue *vq, unsigned int *nbuffers,
			    unsigned int *nplanes, unsigned int sizes[],
			    struct device *alloc_devs[])
{
	struct vcam_device *dev = vb2_get_drv_priv(vq);
	u64 used, size, fit;

	if (*nplanes) {
		if (sizes[0] < dev->fmt.sizeimage)
			return -EINVAL;
	} else {
		*nplanes = 1;
		sizes[0] = dev->fmt.sizeimage;
	}
	if (vq->memory != VB2_MEMORY_MMAP || !*nbuffers)
		return 0;

	used = vcam_cap_mmap_bytes(dev);
	size = PAGE_ALIGN((u64)sizes[0]);
	fit = used < dev->cap_budget ? div64_u64(dev->cap_budget - used, size) : 0;
	if (!fit)
		return -ENOMEM;
	if (*nbuffers > fit)
		*nbuffers = fit;
	return 0;
}

static int vcam_buf_prepare(struct vb2_buffer *vb)
{
	struct vcam_device *dev = vb2_get_drv_priv(vb->vb2_queue);
	struct dma_buf *dbuf = vb->planes[0].dbuf;

	if (vb2_plane_size(vb, 0) < dev->fmt.sizeimage)
		return -EINVAL;
	/* Attached whatever its size: see vcam_attach_dmabuf() */
	if (vb->memory == VB2_MEMORY_DMABUF && dbuf->size < vb2_plane_size(vb, 0))
		return -EINVAL;
	return 0;
}

/*
 * vb2_vmalloc refuses a DMA-BUF smaller than the length the consumer gave
 * for it, but when attach_dmabuf fails vb2 keeps the reference it took on
 * the DMA-BUF, which is then never freed. So the import is attached at the
 * DMA-BUF's own size and vcam_buf_prepare() refuses it: vb2 cleans up after
 * a failed buf_prepare.
 */
static void *vcam_attach_dmabuf(struct vb2_buffer *vb, struct device *dev,
				struct dma_buf *dbuf, unsigned long size)
{
	return vb2_vmalloc_memops.attach_dmabuf(vb, dev, dbuf,
						min_t(unsigned long, size, dbuf->size));
}

static void vcam_buf_queue(struct vb2_buffer *vb)
{
	struct vcam_device *dev = vb2_get_drv_priv(vb->vb2_queue);
	struct vcam_cap_buf *cap = to_cap_buf(vb);
	struct vcam_out_buf *out;
	struct dma_buf *dbuf = NULL;

	spin_lock(&dev->slock);
	out = cap->held;
	if (out) {
		/* The consumer is done reading the frame it held */
		cap->held = NULL;
		out->cap = NULL;
		dbuf = out->dbuf;
		out->dbuf = NULL;
		out->state = VCAM_SLOT_DONE;
		list_add_tail(&out->list, &dev->out_done);
	}
	list_add_tail(&cap->list, &dev->cap_incoming);
	spin_unlock(&dev->slock);

	if (out)
		vcam_out_release(dev->nr, out->index, vb->index, out, dbuf);
}

/**
 * vcam_cap_hand_over() - give the frame path the capture buffers just queued
 * @dev: the camera
 *
 * Called once VIDIOC_QBUF has returned, and at STREAMON.
 */
void vcam_cap_hand_over(struct vcam_device *dev)
{
	spin_lock(&dev->slock);
	list_splice_tail_init(&dev->cap_incoming, &dev->cap_queued);
	spin_unlock(&dev->slock);
	vcam_kick(dev);
}

/*
 * The consumer stopped: give back everything the driver holds from the
 * capture side (the queued capture buffers, in error, and the slots in
 * flight) and drop the frames still pending, which were meant for it.
 */
static void vcam_end_session(struct vcam_device *dev)
{
	struct dma_buf *dbufs[VCAM_MAX_FRAMES];
	struct vcam_out_buf *out, *next;
	struct vcam_cap_buf *cap, *tmp;
	unsigned int i, n = 0;
	LIST_HEAD(caps);

	spin_lock(&dev->slock);
	list_splice_init(&dev->cap_queued, &caps);
	list_splice_tail_init(&dev->cap_incoming, &caps);
	for (i = 0; i < dev->nr_slots; i++) {
		out = &dev->slots[i];
		if (out->state != VCAM_SLOT_INFLIGHT)
			continue;
		out->cap->held = NULL;
		out->cap = NULL;
		dbufs[n++] = out->dbuf;
		out->dbuf = NULL;
		out->state = VCAM_SLOT_DONE;
		list_add_tail(&out->list, &dev->out_done);
	}
	list_for_each_entry_safe(out, next, &dev->out_pending, list) {
		dbufs[n++] = out->dbuf;
		out->dbuf = NULL;
		vcam_out_dropped(dev->nr, dev, out->index);
	}
	dev->fence_deadline = 0;
	spin_unlock(&dev->slock);

	list_for_each_entry_safe(cap, tmp, &caps, list) {
		list_del(&cap->list);
		vb2_buffer_done(&cap->vb.vb2_buf, VB2_BUF_STATE_ERROR);
	}
	while (n)
		dma_buf_put(dbufs[--n]);
}

/* Called with dev->slock held */
static void vcam_set_streaming(struct vcam_device *dev, bool streaming)
{
	WRITE_ONCE(dev->streaming, streaming);
	WRITE_ONCE(dev->status_changes, dev->status_changes + 1);
	if (dev->wait)
		wake_up_interruptible(dev->wait);
}

static int vcam_start_streaming(struct vb2_queue *vq, unsigned int count)
{
	struct vcam_device *dev = vb2_get_drv_priv(vq);

	spin_lock(&dev->slock);
	dev->sequence = 0;
	vcam_set_streaming(dev, true);
	spin_unlock(&dev->slock);

	vcam_cap_hand_over(dev);
	return 0;
}

static void vcam_stop_streaming(struct vb2_queue *vq)
{
	struct vcam_device *dev = vb2_get_drv_priv(vq);

	spin_lock(&dev->slock);
	vcam_set_streaming(dev, false);
	spin_unlock(&dev->slock);

	/*
	 * Let a delivery under way complete its capture buffer (a pending
	 * fence deadline runs at once, and sees streaming stopped); then no
	 * run can arm a fence callback any more.
	 */
	flush_delayed_work(&dev->work);
	vcam_fence_disarm(dev);
	vcam_end_session(dev);
	vcam_wake(dev);
}

static const struct vb2_ops vcam_vb2_ops = {
	.queue_setup		= vcam_queue_setup,
	.buf_prepare		= vcam_buf_prepare,
	.buf_queue		= vcam_buf_queue,
	.start_streaming	= vcam_start_streaming,
	.stop_streaming		= vcam_stop_streaming,
#if VCAM_VB2_HAS_WAIT_OPS
	.wait_prepare		= vb2_ops_wait_prepare,
	.wait_finish		= vb2_ops_wait_finish,
#endif
};

/**
 * vcam_queue_init() - set up the capture queue and the frame path
 * @dev: the camera, with @dev->lock initialized
 *
 * vb2_vmalloc backs MMAP buffers with vmalloc memory, maps USERPTR buffers
 * and vmaps imported DMA-BUFs, so that the copy path always has a CPU
 * address; an imported DMA-BUF also identifies the zero-copy path.
 *
 * Return: 0 or -errno.
 */
int vcam_queue_init(struct vcam_device *dev)
{
	struct vb2_queue *q = &dev->queue;

	INIT_LIST_HEAD(&dev->out_pending);
	INIT_LIST_HEAD(&dev->out_done);
	INIT_LIST_HEAD(&dev->cap_queued);
	INIT_LIST_HEAD(&dev->cap_incoming);
	INIT_DELAYED_WORK(&dev->work, vcam_frame_work);

	q->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	q->io_modes = VB2_MMAP | VB2_USERPTR | VB2_DMABUF;
	q->drv_priv = dev;
	q->buf_struct_size = sizeof(struct vcam_cap_buf);
	q->ops = &vcam_vb2_ops;
	dev->mem_ops = vb2_vmalloc_memops;
	dev->mem_ops.attach_dmabuf = vcam_attach_dmabuf;
	q->mem_ops = &dev->mem_ops;
	q->timestamp_flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
	q->lock = &dev->lock;
	/*
	 * Charges vb2_vmalloc's bookkeeping to the consumer's memory cgroup;
	 * its buffer pages come from vmalloc_user(), which never charges.
	 */
	q->gfp_flags = __GFP_ACCOUNT;
	vcam_vb2_set_min_queued(q, 0);

	return vb2_queue_init(q);
}
