// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam - the capture node: formats, V4L2 ioctls, camera lifetime, counters
 *
 * The camera's format belongs to the producer: it is fixed when the camera
 * is created. The capture node therefore enumerates that one format, and
 * VIDIOC_TRY_FMT and VIDIOC_S_FMT return it; asking for a different format
 * while buffers are allocated fails with -EBUSY.
 */

#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <media/v4l2-ioctl.h>

#include "vcam-core.h"
#include "vcam-compat.h"

/* Sorted by fourcc text: the control node's "formats" attribute lists them */
static const struct vcam_format_info vcam_formats[] = {
	{ .fourcc = V4L2_PIX_FMT_BGR24, .bpp = 24, .cpp = 3, .hstep = 1, .vstep = 1 },
	{ .fourcc = V4L2_PIX_FMT_XRGB32, .bpp = 32, .cpp = 4, .hstep = 1, .vstep = 1 },
	{ .fourcc = V4L2_PIX_FMT_GREY, .bpp = 8, .cpp = 1, .hstep = 1, .vstep = 1 },
	{ .fourcc = V4L2_PIX_FMT_MJPEG, .bpp = 32, .cpp = 0, .hstep = 1, .vstep = 1,
	  .compressed = true },
	{ .fourcc = V4L2_PIX_FMT_NV12, .bpp = 12, .cpp = 1, .hstep = 2, .vstep = 2 },
	{ .fourcc = V4L2_PIX_FMT_RGB24, .bpp = 24, .cpp = 3, .hstep = 1, .vstep = 1 },
	{ .fourcc = V4L2_PIX_FMT_UYVY, .bpp = 16, .cpp = 2, .hstep = 2, .vstep = 1 },
	{ .fourcc = V4L2_PIX_FMT_YUV420, .bpp = 12, .cpp = 1, .hstep = 2, .vstep = 2 },
	{ .fourcc = V4L2_PIX_FMT_YUYV, .bpp = 16, .cpp = 2, .hstep = 2, .vstep = 1 },
};

/**
 * vcam_format_find() - look up a pixel format
 * @fourcc: V4L2 fourcc
 *
 * Return: its description, or NULL if vcam does not carry it.
 */
const struct vcam_format_info *vcam_format_find(u32 fourcc)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vcam_formats); i++)
		if (vcam_formats[i].fourcc == fourcc)
			return &vcam_formats[i];
	return NULL;
}

/**
 * vcam_format_count() - number of pixel formats vcam carries
 *
 * Return: the count.
 */
unsigned int vcam_format_count(void)
{
	return ARRAY_SIZE(vcam_formats);
}

/**
 * vcam_format_get() - the pixel formats in fourcc text order
 * @index: 0 to vcam_format_count() - 1
 *
 * Return: the description, or NULL past the end.
 */
const struct vcam_format_info *vcam_format_get(unsigned int index)
{
	return index < ARRAY_SIZE(vcam_formats) ? &vcam_formats[index] : NULL;
}

/**
 * vcam_format_fill() - compute the stride and frame size of a format
 * @pix: the format; width and height are read, bytesperline and sizeimage
 *	are written
 * @finfo: description of @pix->pixelformat
 *
 * Return: 0, or -EOVERFLOW if the frame size does not fit in 32 bits.
 */
int vcam_format_fill(struct v4l2_pix_format *pix,
		     const struct vcam_format_info *finfo)
{
	u64 bits;

	/* width * height fits in 64 bits; times bpp may not */
	if (check_mul_overflow((u64)pix->width * pix->height, (u64)finfo->bpp,
			       &bits) || bits / 8 > U32_MAX)
		return -EOVERFLOW;
	pix->sizeimage = bits / 8;
	pix->bytesperline = pix->width * finfo->cpp;
	return 0;
}

static struct vcam_device *vcam_from_file(struct file *file)
{
	return container_of(video_devdata(file), struct vcam_device, vdev);
}

/* ---------------------------------------------------------------------- */
/* V4L2 ioctls                                                             */

static int vcam_querycap(struct file *file, void *priv,
			 struct v4l2_capability *cap)
{
	struct vcam_device *dev = vcam_from_file(file);

	strscpy(cap->driver, VCAM_DRIVER_NAME, sizeof(cap->driver));
	strscpy(cap->card, dev->card, sizeof(cap->card));
	/* vdev.num is set before the node appears; dev->nr only after */
	snprintf(cap->bus_info, sizeof(cap->bus_info), "platform:vcam-%d",
		 dev->vdev.num);
	return 0;
}

static int vcam_enum_fmt_vid_cap(struct file *file, void *priv,
				 struct v4l2_fmtdesc *f)
{
	struct vcam_device *dev = vcam_from_file(file);

	if (f->index)
		return -EINVAL;
	f->pixelformat = dev->fmt.pixelformat;
	return 0;
}

static int vcam_g_fmt_vid_cap(struct file *file, void *priv,
			      struct v4l2_format *f)
{
	struct vcam_device *dev = vcam_from_file(file);

	f->fmt.pix = dev->fmt;
	return 0;
}

static int vcam_s_fmt_vid_cap(struct file *file, void *priv,
			      struct v4l2_format *f)
{
	struct vcam_device *dev = vcam_from_file(file);
	struct v4l2_pix_format *pix = &f->fmt.pix;

	if ((pix->pixelformat != dev->fmt.pixelformat ||
	     pix->width != dev->fmt.width || pix->height != dev->fmt.height) &&
	    vb2_is_busy(&dev->queue))
		return -EBUSY;
	*pix = dev->fmt;
	return 0;
}

static int vcam_enum_framesizes(struct file *file, void *priv,
				struct v4l2_frmsizeenum *fsize)
{
	struct vcam_device *dev = vcam_from_file(file);

	if (fsize->index || fsize->pixel_format != dev->fmt.pixelformat)
		return -EINVAL;
	fsize->type = V4L2_FRMSIZE_TYPE_DISCRETE;
	fsize->discrete.width = dev->fmt.width;
	fsize->discrete.height = dev->fmt.height;
	return 0;
}

static int vcam_enum_frameintervals(struct file *file, void *priv,
				    struct v4l2_frmivalenum *fival)
{
	struct vcam_device *dev = vcam_from_file(file);

	if (fival->index || fival->pixel_format != dev->fmt.pixelformat ||
	    fival->width != dev->fmt.width || fival->height != dev->fmt.height)
		return -EINVAL;
	fival->type = V4L2_FRMIVAL_TYPE_CONTINUOUS;
	fival->stepwise.min.numerator = 1;
	fival->stepwise.min.denominator = VCAM_MAX_FPS;
	fival->stepwise.max.numerator = 1;
	fival->stepwise.max.denominator = VCAM_MIN_FPS;
	fival->stepwise.step.numerator = 1;
	fival->stepwise.step.denominator = 1;
	return 0;
}

static void vcam_fill_parm(struct vcam_device *dev, struct v4l2_streamparm *a)
{
	struct v4l2_captureparm *cp = &a->parm.capture;

	memset(cp, 0, sizeof(*cp));
	cp->capability = V4L2_CAP_TIMEPERFRAME;
	cp->timeperframe.numerator = 1;
	cp->timeperframe.denominator = vcam_current_fps(dev);
}

static int vcam_g_parm(struct file *file, void *priv,
		       struct v4l2_streamparm *a)
{
	struct vcam_device *dev = vcam_from_file(file);

	if (a->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		return -EINVAL;
	vcam_fill_parm(dev, a);
	return 0;
}

/*
 * The requested rate is a wish the producer may read in sysfs
 * (requested_fps); what is reported back is the rate frames arrive at.
 */
static int vcam_s_parm(struct file *file, void *priv,
		       struct v4l2_streamparm *a)
{
	struct vcam_device *dev = vcam_from_file(file);
	struct v4l2_fract *tpf = &a->parm.capture.timeperframe;

	if (a->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		return -EINVAL;
	if (tpf->numerator && tpf->denominator) {
		/* in 64 bits: den + num / 2 may not fit in 32 */
		u32 fps = clamp_t(u64, DIV_ROUND_CLOSEST_ULL((u64)tpf->denominator,
							     tpf->numerator),
				  VCAM_MIN_FPS, VCAM_MAX_FPS);

		spin_lock(&dev->slock);
		WRITE_ONCE(dev->requested_fps, fps);
		spin_unlock(&dev->slock);
	}
	vcam_fill_parm(dev, a);
	return 0;
}

static int vcam_enum_input(struct file *file, void *priv,
			   struct v4l2_input *inp)
{
	struct vcam_device *dev = vcam_from_file(file);

	if (inp->index)
		return -EINVAL;
	inp->type = V4L2_INPUT_TYPE_CAMERA;
	strscpy(inp->name, "Camera", sizeof(inp->name));
	inp->status = vcam_producer_active(dev) ? 0 : V4L2_IN_ST_NO_SIGNAL;
	return 0;
}

static int vcam_g_input(struct file *file, void *priv, unsigned int *i)
{
	*i = 0;
	return 0;
}

static int vcam_s_input(struct file *file, void *priv, unsigned int i)
{
	return i ? -EINVAL : 0;
}

/*
 * The frame path may complete a buffer as soon as it sees it; it sees it
 * only after vb2 has filled in QBUF's answer, which must not say DONE.
 */
static int vcam_qbuf(struct file *file, void *priv, struct v4l2_buffer *b)
{
	int ret = vb2_ioctl_qbuf(file, priv, b);

	vcam_cap_hand_over(vcam_from_file(file));
	return ret;
}

static const struct v4l2_ioctl_ops vcam_ioctl_ops = {
	.vidioc_querycap		= vcam_querycap,

	.vidioc_enum_fmt_vid_cap	= vcam_enum_fmt_vid_cap,
	.vidioc_g_fmt_vid_cap		= vcam_g_fmt_vid_cap,
	.vidioc_s_fmt_vid_cap		= vcam_s_fmt_vid_cap,
	.vidioc_try_fmt_vid_cap		= vcam_g_fmt_vid_cap,
	.vidioc_enum_framesizes		= vcam_enum_framesizes,
	.vidioc_enum_frameintervals	= vcam_enum_frameintervals,
	.vidioc_g_parm			= vcam_g_parm,
	.vidioc_s_parm			= vcam_s_parm,

	.vidioc_enum_input		= vcam_enum_input,
	.vidioc_g_input			= vcam_g_input,
	.vidioc_s_input			= vcam_s_input,

	.vidioc_reqbufs			= vb2_ioctl_reqbufs,
	.vidioc_create_bufs		= vb2_ioctl_create_bufs,
	.vidioc_prepare_buf		= vb2_ioctl_prepare_buf,
	.vidioc_querybuf		= vb2_ioctl_querybuf,
	.vidioc_qbuf			= vcam_qbuf,
	.vidioc_dqbuf			= vb2_ioctl_dqbuf,
	.vidioc_expbuf			= vb2_ioctl_expbuf,
	.vidioc_streamon		= vb2_ioctl_streamon,
	.vidioc_streamoff		= vb2_ioctl_streamoff,
};

static const struct v4l2_file_operations vcam_fops = {
	.owner		= THIS_MODULE,
	.open		= v4l2_fh_open,
	.release	= vb2_fop_release,
	.poll		= vb2_fop_poll,
	.mmap		= vb2_fop_mmap,
	.unlocked_ioctl	= video_ioctl2,
};

/* ---------------------------------------------------------------------- */
/* Counters in sysfs: /sys/class/video4linux/videoN/vcam/                  */

static struct vcam_device *vcam_from_device(struct device *d)
{
	return container_of(to_video_device(d), struct vcam_device, vdev);
}

/* A read-only attribute for one counter of &struct vcam_stats */
#define VCAM_STAT_ATTR(name)						\
static ssize_t name##_show(struct device *d,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	struct vcam_stats stats;					\
									\
	vcam_stats_read(vcam_from_device(d), &stats);			\
	return sysfs_emit(buf, "%llu\n", stats.name);			\
}									\
static DEVICE_ATTR_RO(name)

VCAM_STAT_ATTR(frames_queued);
VCAM_STAT_ATTR(frames_dequeued);
VCAM_STAT_ATTR(frames_zero_copy);
VCAM_STAT_ATTR(frames_copied);
VCAM_STAT_ATTR(frames_errored);
VCAM_STAT_ATTR(frames_dropped);
VCAM_STAT_ATTR(bytes_copied);

static ssize_t fps_show(struct device *d, struct device_attribute *attr,
			char *buf)
{
	return sysfs_emit(buf, "%u\n", vcam_current_fps(vcam_from_device(d)));
}
static DEVICE_ATTR_RO(fps);

static ssize_t requested_fps_show(struct device *d,
				  struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n",
			  READ_ONCE(vcam_from_device(d)->requested_fps));
}
static DEVICE_ATTR_RO(requested_fps);

static ssize_t slots_show(struct device *d, struct device_attribute *attr,
			  char *buf)
{
	struct vcam_device *dev = vcam_from_device(d);
	unsigned int count[VCAM_SLOT_DONE + 1] = { };
	unsigned int i;

	spin_lock(&dev->slock);
	for (i = 0; i < dev->nr_slots; i++)
		count[dev->slots[i].state]++;
	spin_unlock(&dev->slock);

	return sysfs_emit(buf, "idle %u queued %u active %u inflight %u done %u\n",
			  count[VCAM_SLOT_IDLE], count[VCAM_SLOT_QUEUED],
			  count[VCAM_SLOT_ACTIVE], count[VCAM_SLOT_INFLIGHT],
			  count[VCAM_SLOT_DONE]);
}
static DEVICE_ATTR_RO(slots);

static ssize_t capture_queued_show(struct device *d,
				   struct device_attribute *attr, char *buf)
{
	struct vcam_device *dev = vcam_from_device(d);
	struct list_head *pos;
	unsigned int n = 0;

	spin_lock(&dev->slock);
	list_for_each(pos, &dev->cap_queued)
		n++;
	list_for_each(pos, &dev->cap_incoming)
		n++;
	spin_unlock(&dev->slock);

	return sysfs_emit(buf, "%u\n", n);
}
static DEVICE_ATTR_RO(capture_queued);

/*
 * Frames filled for the consumer that it has not dequeued yet: a producer
 * whose input has ended waits for 0 before it closes the camera, since a
 * DQBUF after the node is unregistered gets ENODEV and the frame is lost.
 */
static ssize_t capture_done_show(struct device *d,
				 struct device_attribute *attr, char *buf)
{
	struct vb2_queue *q = &vcam_from_device(d)->queue;
	struct list_head *pos;
	unsigned long flags;
	unsigned int n = 0;

	spin_lock_irqsave(&q->done_lock, flags);
	list_for_each(pos, &q->done_list)
		n++;
	spin_unlock_irqrestore(&q->done_lock, flags);

	return sysfs_emit(buf, "%u\n", n);
}
static DEVICE_ATTR_RO(capture_done);

static struct attribute *vcam_stats_attrs[] = {
	&dev_attr_frames_queued.attr,
	&dev_attr_frames_dequeued.attr,
	&dev_attr_frames_zero_copy.attr,
	&dev_attr_frames_copied.attr,
	&dev_attr_frames_errored.attr,
	&dev_attr_frames_dropped.attr,
	&dev_attr_bytes_copied.attr,
	&dev_attr_fps.attr,
	&dev_attr_requested_fps.attr,
	&dev_attr_slots.attr,
	&dev_attr_capture_queued.attr,
	&dev_attr_capture_done.attr,
	NULL
};

static const struct attribute_group vcam_stats_group = {
	.name	= "vcam",
	.attrs	= vcam_stats_attrs,
};

static const struct attribute_group *vcam_stats_groups[] = {
	&vcam_stats_group,
	NULL
};

/* ---------------------------------------------------------------------- */
/* Camera lifetime                                                         */

/**
 * vcam_device_free() - free a camera nothing refers to any more
 * @dev_nr: the N its /dev/videoN had
 * @dev: the camera
 *
 * Observable: from here on @dev's memory may become anything, so observe/
 * forgets the camera here.
 */
noinline __noclone void vcam_device_free(unsigned int dev_nr,
					 struct vcam_device *dev)
{
	vcam_fence_disarm(dev);
	cancel_delayed_work_sync(&dev->work);
	/* Only now: the video minor and the capture buffers are gone too */
	if (dev->user)
		vcam_user_uncharge(dev->user);
	mutex_destroy(&dev->lock);
	kfree(dev);
}

static void vcam_device_release(struct v4l2_device *v4l2_dev)
{
	struct vcam_device *dev = container_of(v4l2_dev, struct vcam_device,
					       v4l2_dev);

	vcam_device_free(dev->nr, dev);
}

/**
 * vcam_device_create() - create and register a camera
 * @cfg: the validated request, with its camera limits charged
 *
 * Return: the camera, with its video node registered, or an ERR_PTR(). The
 * camera owns @cfg->user's charge; on failure the caller still does.
 */
noinline __noclone struct vcam_device *
vcam_device_create(const struct vcam_config *cfg)
{
	struct vcam_device *dev;
	struct video_device *vdev;
	unsigned int i;
	int ret;

	/* Charged to the creator's memory cgroup, like the slots' buffers */
	dev = kzalloc(sizeof(*dev), GFP_KERNEL_ACCOUNT);
	if (!dev)
		return ERR_PTR(-ENOMEM);

	mutex_init(&dev->lock);
	spin_lock_init(&dev->slock);
	strscpy(dev->card, cfg->card, sizeof(dev->card));
	dev->fmt = cfg->fmt;
	dev->finfo = cfg->finfo;
	dev->nr_slots = cfg->nr_frames;
	dev->cap_budget = cfg->cap_budget;
	dev->wait = cfg->wait;
	dev->requested_fps = VCAM_DEF_FPS;
	for (i = 0; i < dev->nr_slots; i++) {
		dev->slots[i].dev = dev;
		dev->slots[i].index = i;
		INIT_LIST_HEAD(&dev->slots[i].list);
	}

	strscpy(dev->v4l2_dev.name, VCAM_DRIVER_NAME,
		sizeof(dev->v4l2_dev.name));
	ret = v4l2_device_register(NULL, &dev->v4l2_dev);
	if (ret)
		goto free_dev;
	/* From here on the last v4l2_device_put() frees @dev */
	dev->v4l2_dev.release = vcam_device_release;

	ret = vcam_queue_init(dev);
	if (ret)
		goto put_v4l2_dev;

	vdev = &dev->vdev;
	strscpy(vdev->name, dev->card, sizeof(vdev->name));
	vdev->fops = &vcam_fops;
	vdev->ioctl_ops = &vcam_ioctl_ops;
	vdev->release = video_device_release_empty;
	vdev->v4l2_dev = &dev->v4l2_dev;
	vdev->queue = &dev->queue;
	vdev->lock = &dev->lock;
	vdev->vfl_dir = VFL_DIR_RX;
	vdev->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
	vdev->dev.groups = vcam_stats_groups;
	video_set_drvdata(vdev, dev);

	ret = video_register_device(vdev, VFL_TYPE_VIDEO, -1);
	if (ret)
		goto put_v4l2_dev;

	dev->nr = vdev->num;
	snprintf(dev->v4l2_dev.name, sizeof(dev->v4l2_dev.name), "vcam-%u",
		 dev->nr);
	/* Only a camera that exists owns the charge; else the caller keeps it */
	dev->user = cfg->user;
	return dev;

put_v4l2_dev:
	v4l2_device_unregister(&dev->v4l2_dev);
	v4l2_device_put(&dev->v4l2_dev);
	return ERR_PTR(ret);
free_dev:
	mutex_destroy(&dev->lock);
	kfree(dev);
	return ERR_PTR(ret);
}

/**
 * vcam_device_destroy() - remove a camera whose control file is closed
 * @dev: the camera
 *
 * The video node disappears at once. A consumer still streaming keeps its
 * queue until it closes the node, but the queue is in error: a blocked
 * VIDIOC_DQBUF returns -EIO, poll() reports EPOLLERR and every later ioctl
 * fails with -ENODEV. Every frame the driver held is dropped. The memory is
 * freed when the last user of the node is gone.
 */
void vcam_device_destroy(struct vcam_device *dev)
{
	spin_lock(&dev->slock);
	dev->disconnected = true;
	dev->wait = NULL;	/* the control file is going away */
	spin_unlock(&dev->slock);
	cancel_delayed_work_sync(&dev->work);
	vcam_fence_disarm(dev);

	mutex_lock(&dev->lock);
	vb2_queue_error(&dev->queue);
	mutex_unlock(&dev->lock);
	video_unregister_device(&dev->vdev);

	vcam_frames_release(dev);
	v4l2_device_unregister(&dev->v4l2_dev);
	v4l2_device_put(&dev->v4l2_dev);
}
