/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */
/*
 * vcam - a V4L2 virtual camera fed with DMA-BUFs
 *
 * The control node /dev/vcam turns one open file into one capture device
 * (/dev/videoN). The producer queues frames held in DMA-BUFs into output
 * slots and dequeues the slots again once the frames have been consumed.
 *
 * Every structure is naturally aligned, has no implicit padding and has the
 * same layout on 32-bit and 64-bit user space, so the 32-bit compat ioctl is
 * the native handler. User pointers travel in __u64 fields. Timestamps are
 * CLOCK_MONOTONIC nanoseconds.
 */
#ifndef _UAPI_LINUX_VCAM_H
#define _UAPI_LINUX_VCAM_H

#include <linux/ioctl.h>
#include <linux/types.h>

/** VCAM_MAX_FRAMES - the largest number of output slots per camera */
#define VCAM_MAX_FRAMES		32
/** VCAM_MIN_FRAMES - the smallest number of output slots per camera */
#define VCAM_MIN_FRAMES		2
/** VCAM_MAX_WIDTH - the largest frame width in pixels */
#define VCAM_MAX_WIDTH		8192
/** VCAM_MAX_HEIGHT - the largest frame height in pixels */
#define VCAM_MAX_HEIGHT		8192
/** VCAM_MIN_WIDTH - the smallest frame width in pixels */
#define VCAM_MIN_WIDTH		2
/** VCAM_MIN_HEIGHT - the smallest frame height in pixels */
#define VCAM_MIN_HEIGHT		2
/** VCAM_LABEL_MAX - size of the card label buffer, NUL included */
#define VCAM_LABEL_MAX		32

/** VCAM_STATUS_IDLE - no consumer is streaming from the capture node */
#define VCAM_STATUS_IDLE	(1ULL << 0)
/** VCAM_STATUS_STREAMING - a consumer is streaming from the capture node */
#define VCAM_STATUS_STREAMING	(1ULL << 1)
/** VCAM_STATUS_MASK - every status bit this version knows */
#define VCAM_STATUS_MASK	(VCAM_STATUS_IDLE | VCAM_STATUS_STREAMING)

/**
 * struct vcam_frame - one output slot, as reported by %VCAM_IOC_CREATE
 * @index: the slot index to pass to %VCAM_IOC_QUEUE
 * @length: the size in bytes of a full frame of the camera's format; a
 *	DMA-BUF queued into the slot must be at least this large
 */
struct vcam_frame {
	__u32 index;
	__u32 length;
};

/**
 * struct vcam_ioc_create - argument of %VCAM_IOC_CREATE
 * @device_name: user pointer to the NUL-terminated card label reported by
 *	VIDIOC_QUERYCAP: 1 to 31 characters, only letters, digits and spaces,
 *	starting and ending with a letter or a digit
 * @width: frame width in pixels, 2 to 8192; 0 selects 640
 * @height: frame height in pixels, 2 to 8192; 0 selects 480
 * @pixelformat: V4L2 fourcc of the frames; one listed in the control node's
 *	sysfs attribute ``formats``
 * @colorspace: V4L2 colorspace (enum v4l2_colorspace); 0 selects sRGB
 * @bytesperline: 0, or exactly the stride the driver computes for @width and
 *	@pixelformat (0 for compressed formats)
 * @reserved: must be 0
 * @device_nr: must be 0 on input; on output the N of the new /dev/videoN
 * @nr_frames: number of output slots, 2 to 32, and number of entries of
 *	@frames
 * @frames: user pointer to @nr_frames &struct vcam_frame entries, filled by
 *	the driver
 *
 * The request is strict: if clamping or defaulting would change anything
 * the caller asked for explicitly, the ioctl fails with %EINVAL instead of
 * creating a different camera. A size whose frame size would not fit in 32
 * bits fails with %EOVERFLOW (checked before the range checks).
 */
struct vcam_ioc_create {
	__u64 device_name;
	__u32 width;
	__u32 height;
	__u32 pixelformat;
	__u32 colorspace;
	__u32 bytesperline;
	__u32 reserved;
	__u32 device_nr;
	__u32 nr_frames;
	__u64 frames;
};

/**
 * VCAM_QUEUE_FD_DRIVER - &struct vcam_ioc_queue.fd of a driver-allocated buffer
 *
 * For kernels or systems without a DMA-BUF allocator: each slot also has a
 * buffer of its own, allocated by the driver on first use, that the producer
 * maps with mmap() of the control file at offset index x (the frame length
 * rounded up to the page size). The buffer is a DMA-BUF that
 * %VCAM_IOC_EXPORT hands out, so a consumer can import it for the zero-copy
 * path. The value is an invalid fd, which older drivers refuse with %EBADF.
 */
#define VCAM_QUEUE_FD_DRIVER	0xffffffffU

/**
 * struct vcam_ioc_queue - argument of %VCAM_IOC_QUEUE
 * @fd: file descriptor of the DMA-BUF holding the frame; the driver holds a
 *	reference to the DMA-BUF until the slot is handed back by
 *	%VCAM_IOC_DEQUEUE. %VCAM_QUEUE_FD_DRIVER names the slot's own
 *	driver-allocated buffer instead.
 * @index: the output slot, as reported by %VCAM_IOC_CREATE
 * @length: payload in bytes; 0 means a full frame. A short payload of an
 *	uncompressed format is delivered with V4L2_BUF_FLAG_ERROR.
 * @reserved: must be 0
 * @timestamp: CLOCK_MONOTONIC time of the frame in nanoseconds; 0 means
 *	"now". It becomes the capture buffer's timestamp, so it may be neither
 *	earlier than the last frame queued on the camera nor more than a
 *	second ahead of now (another clock).
 */
struct vcam_ioc_queue {
	__u32 fd;
	__u32 index;
	__u32 length;
	__u32 reserved;
	__u64 timestamp;
};

/**
 * struct vcam_ioc_dequeue - argument of %VCAM_IOC_DEQUEUE
 * @index: the output slot that is free again
 * @length: the payload in bytes of the frame it held; 0 when no consumer
 *	received the frame: it was still waiting when the consumer stopped
 *	streaming (VIDIOC_STREAMOFF or close), and frames made for one
 *	consumer are never given to the next
 * @timestamp: the timestamp of the frame it held, in nanoseconds
 */
struct vcam_ioc_dequeue {
	__u32 index;
	__u32 length;
	__u64 timestamp;
};

/**
 * struct vcam_ioc_wait - argument of %VCAM_IOC_WAIT
 * @mask: the status bits to wait for, all of them; non-zero, only bits of
 *	%VCAM_STATUS_MASK, and never both %VCAM_STATUS_IDLE and
 *	%VCAM_STATUS_STREAMING
 * @status: on output, the status when the wait ended
 */
struct vcam_ioc_wait {
	__u64 mask;
	__u64 status;
};

/**
 * struct vcam_ioc_export - argument of %VCAM_IOC_EXPORT
 * @index: the output slot whose driver-allocated buffer to export
 * @flags: 0 or O_CLOEXEC, for the new file descriptor
 * @fd: on output, a new file descriptor of the buffer's DMA-BUF
 * @reserved: must be 0
 */
struct vcam_ioc_export {
	__u32 index;
	__u32 flags;
	__s32 fd;
	__u32 reserved;
};

/**
 * define VCAM_IOC_CREATE - create the capture device of this open file
 *
 * Takes a &struct vcam_ioc_create. Succeeds once per open file (then
 * %EBUSY). Closing the file removes the capture device.
 */
#define VCAM_IOC_CREATE		_IOWR('v', 0x00, struct vcam_ioc_create)

/**
 * define VCAM_IOC_QUEUE - queue a frame into an output slot
 *
 * Takes a &struct vcam_ioc_queue. %EBADF for a bad fd, %EINVAL for an fd
 * that is not a DMA-BUF, a DMA-BUF too small for the frame, a slot out of
 * range, a payload larger than a frame, a non-zero @reserved or a timestamp
 * over a second ahead or earlier than the last frame's, %EBUSY for a slot (or a
 * DMA-BUF) that is already queued and not yet dequeued.
 */
#define VCAM_IOC_QUEUE		_IOW('v', 0x01, struct vcam_ioc_queue)

/**
 * define VCAM_IOC_DEQUEUE - take back an output slot whose frame is consumed
 *
 * Fills a &struct vcam_ioc_dequeue. Blocks (interruptibly) until a slot is
 * free again, or fails with %EAGAIN on a non-blocking file.
 *
 * poll() on the control file: %EPOLLIN when DEQUEUE would not block,
 * %EPOLLOUT when a slot is free for QUEUE, %EPOLLPRI when the status changed
 * (a consumer started or stopped streaming) since this file last read it
 * with STATUS or WAIT; %EPOLLERR before CREATE.
 */
#define VCAM_IOC_DEQUEUE	_IOR('v', 0x02, struct vcam_ioc_dequeue)

/**
 * define VCAM_IOC_STATUS - read the status bits (%VCAM_STATUS_IDLE, ...)
 *
 * Fills a __u64.
 */
#define VCAM_IOC_STATUS		_IOR('v', 0x03, __u64)

/**
 * define VCAM_IOC_WAIT - wait until every bit of a status mask is set
 *
 * Takes a &struct vcam_ioc_wait. Blocks interruptibly; %EAGAIN on a
 * non-blocking file when the condition does not hold yet; %EINVAL for a
 * mask that can never hold.
 */
#define VCAM_IOC_WAIT		_IOWR('v', 0x04, struct vcam_ioc_wait)

/**
 * define VCAM_IOC_EXPORT - a DMA-BUF fd of a slot's driver-allocated buffer
 *
 * Takes a &struct vcam_ioc_export; like VIDIOC_EXPBUF for the buffer that
 * %VCAM_QUEUE_FD_DRIVER queues and mmap() of the control file maps: the
 * same memory, allocated on first use. The DMA-BUF is readable, writable
 * and mappable; it outlives the camera for as long as a descriptor or a
 * mapping holds it. A consumer whose capture buffers import it gets the
 * zero-copy path, as with any DMA-BUF the producer queues. %EINVAL for a
 * slot out of range, unknown @flags or a non-zero @reserved; %ENOMEM when
 * the buffer cannot be allocated; %EMFILE when the process has no free fd.
 */
#define VCAM_IOC_EXPORT		_IOWR('v', 0x05, struct vcam_ioc_export)

#endif /* _UAPI_LINUX_VCAM_H */
