// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam - the control node /dev/vcam
 *
 * Each open file is one future camera: VCAM_IOC_CREATE makes it, the other
 * ioctls feed it, closing the file removes it.
 */

#include <linux/build_bug.h>
#include <linux/ctype.h>
#include <linux/dma-buf.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "vcam-core.h"
#include "vcam-compat.h"

/* The uAPI layouts are fixed: same sizes on every ABI, no padding */
static_assert(sizeof(struct vcam_frame) == 8);
static_assert(sizeof(struct vcam_ioc_create) == 48);
static_assert(sizeof(struct vcam_ioc_queue) == 24);
static_assert(sizeof(struct vcam_ioc_dequeue) == 16);
static_assert(sizeof(struct vcam_ioc_wait) == 16);
static_assert(sizeof(struct vcam_ioc_export) == 16);
static_assert(offsetof(struct vcam_ioc_create, frames) == 40);
static_assert(offsetof(struct vcam_ioc_queue, timestamp) == 16);
static_assert(offsetof(struct vcam_ioc_dequeue, timestamp) == 8);

/**
 * struct vcam_ctrl - one open file of the control node
 * @lock: serializes VCAM_IOC_CREATE of this file
 * @wait: DEQUEUE, WAIT and poll wait here, from open on, so that a poll or
 *	an epoll set up before CREATE is woken by CREATE and by the camera
 *	(&vcam_device.wait)
 * @dev: the camera, once created; set once (release/acquire), cleared only
 *	when the file is released
 * @status_seen: &vcam_device.status_changes when this file last read the
 *	status (STATUS, WAIT); poll reports EPOLLPRI while it differs
 */
struct vcam_ctrl {
	struct mutex lock;	/* serializes CREATE */
	wait_queue_head_t wait;
	struct vcam_device *dev;
	u32 status_seen;
};

static struct vcam_device *vcam_ctrl_device(struct vcam_ctrl *ctrl)
{
	/* Pairs with the release in vcam_ioc_create(): a camera seen is whole */
	return smp_load_acquire(&ctrl->dev);
}

/* ---------------------------------------------------------------------- */

/* VCAM_IOC_CREATE                                                         */

/* ASCII letters and digits: the kernel's isalnum() also takes Latin-1 */
static bool vcam_label_alnum(char c)
{
	return isascii(c) && isalnum(c);
}

static int vcam_check_label(char *card, u64 uptr)
{
	long len;
	int i;

	len = strncpy_from_user(card, u64_to_user_ptr(uptr), VCAM_LABEL_MAX);
	if (len < 0)
		return len;
	if (len >= VCAM_LABEL_MAX)
		return -E2BIG;
	if (!len || !vcam_label_alnum(card[0]) ||
	    !vcam_label_alnum(card[len - 1]))
		return -EINVAL;
	for (i = 0; i < len; i++)
		if (!vcam_label_alnum(card[i]) && card[i] != ' ')
			return -EINVAL;
	return 0;
}

static bool vcam_colorspace_valid(u32 colorspace)
{
	switch (colorspace) {
	case V4L2_COLORSPACE_SMPTE170M:
	case V4L2_COLORSPACE_SMPTE240M:
	case V4L2_COLORSPACE_REC709:
	case V4L2_COLORSPACE_470_SYSTEM_M:
	case V4L2_COLORSPACE_470_SYSTEM_BG:
	case V4L2_COLORSPACE_JPEG:
	case V4L2_COLORSPACE_SRGB:
	case V4L2_COLORSPACE_OPRGB:
	case V4L2_COLORSPACE_BT2020:
	case V4L2_COLORSPACE_RAW:
	case V4L2_COLORSPACE_DCI_P3:
		return true;
	default:
		return false;
	}
}

/*
 * Strict: anything that would have to be clamped, rounded or replaced is
 * refused. The frame size is checked for overflow on the size asked for,
 * before the range check.
 */
static int vcam_check_format(const struct vcam_ioc_create *req,
			     struct vcam_config *cfg)
{
	struct v4l2_pix_format *pix = &cfg->fmt;
	const struct vcam_format_info *finfo;
	int ret;

	finfo = vcam_format_find(req->pixelformat);
	if (!finfo)
		return -EINVAL;

	memset(pix, 0, sizeof(*pix));
	pix->width = req->width ? req->width : VCAM_DEF_WIDTH;
	pix->height = req->height ? req->height : VCAM_DEF_HEIGHT;
	pix->pixelformat = finfo->fourcc;
	pix->field = V4L2_FIELD_NONE;
	pix->colorspace = req->colorspace ? req->colorspace :
					    V4L2_COLORSPACE_SRGB;

	ret = vcam_format_fill(pix, finfo);
	if (ret)
		return ret;

	if (pix->width < VCAM_MIN_WIDTH || pix->width > VCAM_MAX_WIDTH ||
	    pix->height < VCAM_MIN_HEIGHT || pix->height > VCAM_MAX_HEIGHT ||
	    pix->width % finfo->hstep || pix->height % finfo->vstep)
		return -EINVAL;
	if (!vcam_colorspace_valid(pix->colorspace))
		return -EINVAL;
	if (req->bytesperline && req->bytesperline != pix->bytesperline)
		return -EINVAL;

	cfg->finfo = finfo;
	return 0;
}

/*
 * The camera's memory limit must hold a buffer for every slot (the driver
 * allocates them on demand, so they are counted whether used or not) and
 * VCAM_MIN_CAPTURE_BUFS capture buffers; MMAP capture buffers get the rest.
 * EFBIG: the spec's CREATE errors already use E2BIG (too many slots, label
 * too long), EOVERFLOW (size) and ENOMEM (an allocation failed).
 */
static int vcam_check_memory(struct vcam_config *cfg)
{
	u64 buf_size = PAGE_ALIGN((u64)cfg->fmt.sizeimage);
	u64 slots = buf_size * cfg->nr_frames;
	u64 limit = vcam_camera_mem_limit();

	if (slots + buf_size * VCAM_MIN_CAPTURE_BUFS > limit)
		return -EFBIG;
	cfg->cap_budget = limit - slots;
	return 0;
}

static int vcam_check_create(const struct vcam_ioc_create *req,
			     struct vcam_config *cfg)
{
	int ret;

	if (req->reserved || req->device_nr)
		return -EINVAL;
	if (req->nr_frames < VCAM_MIN_FRAMES)
		return -EINVAL;
	if (req->nr_frames > VCAM_MAX_FRAMES)
		return -E2BIG;
	if (!req->frames)
		return -EINVAL;

	ret = vcam_check_label(cfg->card, req->device_name);
	if (ret)
		return ret;
	ret = vcam_check_format(req, cfg);
	if (ret)
		return ret;

	cfg->nr_frames = req->nr_frames;
	return vcam_check_memory(cfg);
}

static int vcam_put_frames(const struct vcam_ioc_create *req,
			   const struct vcam_config *cfg)
{
	struct vcam_frame __user *frames = u64_to_user_ptr(req->frames);
	struct vcam_frame frame = { .length = cfg->fmt.sizeimage };

	for (frame.index = 0; frame.index < cfg->nr_frames; frame.index++)
		if (copy_to_user(&frames[frame.index], &frame, sizeof(frame)))
			return -EFAULT;
	return 0;
}

static int vcam_ioc_create(struct vcam_ctrl *ctrl, struct file *file,
			   void __user *argp)
{
	struct vcam_ioc_create req;
	struct vcam_device *dev;
	struct vcam_config cfg;
	int ret;

	mutex_lock(&ctrl->lock);
	if (ctrl->dev) {
		ret = -EBUSY;
		goto unlock;
	}
	if (copy_from_user(&req, argp, sizeof(req))) {
		ret = -EFAULT;
		goto unlock;
	}
	ret = vcam_check_create(&req, &cfg);
	if (ret)
		goto unlock;
	cfg.wait = &ctrl->wait;
	/* Before the node exists, so that a bad pointer leaves nothing */
	ret = vcam_put_frames(&req, &cfg);
	if (ret)
		goto unlock;
	/* The creator is the file's opener: its real uid, as for RLIMIT_NPROC */
	ret = vcam_user_charge(file->f_cred->uid, &cfg.user);
	if (ret)
		goto unlock;

	dev = vcam_device_create(&cfg);
	if (IS_ERR(dev)) {
		ret = PTR_ERR(dev);
		goto uncharge;
	}

	req.device_nr = dev->nr;
	if (copy_to_user(argp, &req, sizeof(req))) {
		ret = -EFAULT;
		goto destroy_dev;
	}

	/* Publish the camera only once it is complete */
	smp_store_release(&ctrl->dev, dev);
	mutex_unlock(&ctrl->lock);
	wake_up_interruptible(&ctrl->wait);
	return 0;

destroy_dev:
	/* The camera owns the charge now: freeing it gives the charge back */
	vcam_device_destroy(dev);
	goto unlock;
uncharge:
	vcam_user_uncharge(cfg.user);
unlock:
	mutex_unlock(&ctrl->lock);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* The other ioctls                                                        */

static int vcam_ioc_queue(struct vcam_device *dev, void __user *argp)
{
	struct vcam_ioc_queue req;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	return vcam_out_queue(dev->nr, dev, &req);
}

static int vcam_ioc_dequeue(struct vcam_device *dev, struct file *file,
			    void __user *argp)
{
	struct vcam_ioc_dequeue res = { };
	int ret;

	ret = vcam_out_dequeue(dev->nr, dev, &res, file->f_flags & O_NONBLOCK);
	if (ret)
		return ret;
	/*
	 * The slot is the producer's again even if it cannot be told: a
	 * producer that passes a bad pointer loses track of its own slot.
	 */
	if (copy_to_user(argp, &res, sizeof(res)))
		return -EFAULT;
	return 0;
}

/* The status, and a note that this file has seen it (ends EPOLLPRI) */
static u64 vcam_read_status(struct vcam_ctrl *ctrl, struct vcam_device *dev)
{
	u64 status;

	spin_lock(&dev->slock);
	WRITE_ONCE(ctrl->status_seen, dev->status_changes);
	status = vcam_status(dev);
	spin_unlock(&dev->slock);
	return status;
}

static int vcam_ioc_status(struct vcam_ctrl *ctrl, struct vcam_device *dev,
			   void __user *argp)
{
	u64 status = vcam_read_status(ctrl, dev);

	return copy_to_user(argp, &status, sizeof(status)) ? -EFAULT : 0;
}

static int vcam_ioc_wait(struct vcam_ctrl *ctrl, struct vcam_device *dev,
			 struct file *file, void __user *argp)
{
	struct vcam_ioc_wait req;
	int ret;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (!req.mask || req.mask & ~VCAM_STATUS_MASK)
		return -EINVAL;
	/* Idle and streaming exclude each other: such a wait never ends */
	if ((req.mask & (VCAM_STATUS_IDLE | VCAM_STATUS_STREAMING)) ==
	    (VCAM_STATUS_IDLE | VCAM_STATUS_STREAMING))
		return -EINVAL;

	if (file->f_flags & O_NONBLOCK) {
		if ((vcam_status(dev) & req.mask) != req.mask)
			return -EAGAIN;
	} else {
		ret = wait_event_interruptible(ctrl->wait,
					       (vcam_status(dev) & req.mask) ==
					       req.mask);
		if (ret)
			return ret;
	}

	req.status = vcam_read_status(ctrl, dev);
	return copy_to_user(argp, &req, sizeof(req)) ? -EFAULT : 0;
}

static int vcam_ioc_export(struct vcam_device *dev, void __user *argp)
{
	struct vcam_ioc_export req;
	struct dma_buf *dbuf;
	int fd;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.reserved || req.flags & ~O_CLOEXEC ||
	    req.index >= dev->nr_slots)
		return -EINVAL;

	dbuf = vcam_slot_dbuf(dev, req.index);
	if (IS_ERR(dbuf))
		return PTR_ERR(dbuf);

	/* The fd goes live only once the caller can be told its number */
	fd = get_unused_fd_flags(req.flags);
	if (fd < 0)
		return fd;
	req.fd = fd;
	if (copy_to_user(argp, &req, sizeof(req))) {
		put_unused_fd(fd);
		return -EFAULT;
	}
	get_dma_buf(dbuf);
	fd_install(fd, dbuf->file);
	return 0;
}

static long vcam_ctrl_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	struct vcam_ctrl *ctrl = file->private_data;
	void __user *argp = (void __user *)arg;
	struct vcam_device *dev;

	if (cmd == VCAM_IOC_CREATE)
		return vcam_ioc_create(ctrl, file, argp);

	dev = vcam_ctrl_device(ctrl);
	if (!dev)
		return -ENOTTY;

	switch (cmd) {
	case VCAM_IOC_QUEUE:
		return vcam_ioc_queue(dev, argp);
	case VCAM_IOC_DEQUEUE:
		return vcam_ioc_dequeue(dev, file, argp);
	case VCAM_IOC_STATUS:
		return vcam_ioc_status(ctrl, dev, argp);
	case VCAM_IOC_WAIT:
		return vcam_ioc_wait(ctrl, dev, file, argp);
	case VCAM_IOC_EXPORT:
		return vcam_ioc_export(dev, argp);
	default:
		return -ENOTTY;
	}
}

/* ---------------------------------------------------------------------- */
/* File operations                                                         */

/*
 * EPOLLIN: a slot is done (DEQUEUE); EPOLLOUT: a slot is free (QUEUE);
 * EPOLLPRI: a consumer started or stopped since this file last read the
 * status. EPOLLERR before CREATE.
 */
static __poll_t vcam_ctrl_poll(struct file *file, poll_table *wait)
{
	struct vcam_ctrl *ctrl = file->private_data;
	struct vcam_device *dev;
	__poll_t mask = 0;

	poll_wait(file, &ctrl->wait, wait);
	dev = vcam_ctrl_device(ctrl);
	if (!dev)
		return EPOLLERR;

	if (vcam_out_dequeue_ready(dev))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (vcam_out_queue_ready(dev))
		mask |= EPOLLOUT | EPOLLWRNORM;
	if (READ_ONCE(dev->status_changes) != READ_ONCE(ctrl->status_seen))
		mask |= EPOLLPRI;
	return mask;
}

/*
 * The slots' driver-allocated buffers: slot i at offset i * the frame size
 * rounded up to pages. The mapping then belongs to the slot's DMA-BUF
 * (dma_buf_mmap() makes it the mapped file), which it keeps alive.
 */
static int vcam_ctrl_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct vcam_ctrl *ctrl = file->private_data;
	struct vcam_device *dev = vcam_ctrl_device(ctrl);
	unsigned long slot_pages, index;
	struct dma_buf *dbuf;

	if (!dev)
		return -ENODEV;
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;

	slot_pages = vcam_slot_mem_size(dev) >> PAGE_SHIFT;
	index = vma->vm_pgoff / slot_pages;
	if (vma->vm_pgoff % slot_pages || index >= dev->nr_slots ||
	    vma->vm_end - vma->vm_start > slot_pages << PAGE_SHIFT)
		return -EINVAL;

	dbuf = vcam_slot_dbuf(dev, index);
	if (IS_ERR(dbuf))
		return PTR_ERR(dbuf);
	return dma_buf_mmap(dbuf, vma, 0);
}

static int vcam_ctrl_open(struct inode *inode, struct file *file)
{
	struct vcam_ctrl *ctrl;

	ctrl = kzalloc(sizeof(*ctrl), GFP_KERNEL_ACCOUNT);
	if (!ctrl)
		return -ENOMEM;
	mutex_init(&ctrl->lock);
	init_waitqueue_head(&ctrl->wait);
	file->private_data = ctrl;
	return nonseekable_open(inode, file);
}

static int vcam_ctrl_release(struct inode *inode, struct file *file)
{
	struct vcam_ctrl *ctrl = file->private_data;

	if (ctrl->dev)
		vcam_device_destroy(ctrl->dev);
	mutex_destroy(&ctrl->lock);
	kfree(ctrl);
	return 0;
}

const struct file_operations vcam_ctrl_fops = {
	.owner		= THIS_MODULE,
	.open		= vcam_ctrl_open,
	.release	= vcam_ctrl_release,
	.poll		= vcam_ctrl_poll,
	.mmap		= vcam_ctrl_mmap,
	.unlocked_ioctl	= vcam_ctrl_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};
