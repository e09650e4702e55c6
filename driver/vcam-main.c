// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam - a V4L2 virtual camera fed with DMA-BUFs, zero-copy when shared
 *
 * Module entry points, the control node's misc device with its read-only
 * attributes, and the limits that keep one user from taking the machine:
 * cameras at once (global and per user) and the memory one camera may pin.
 */

#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>
#include <linux/uidgid.h>

#include "vcam-core.h"
#include "vcam-compat.h"

static ssize_t formats_show(struct device *d, struct device_attribute *attr,
			    char *buf)
{
	const struct vcam_format_info *finfo;
	unsigned int i, len = 0;
	char text[5];
	u32 fourcc;
	int c;

	for (i = 0; (finfo = vcam_format_get(i)); i++) {
		fourcc = finfo->fourcc;
		for (c = 0; c < 4; c++, fourcc >>= 8)
			text[c] = fourcc & 0xff;
		text[4] = '\0';
		strim(text);
		len += sysfs_emit_at(buf, len, "%s%s", i ? " " : "", text);
	}
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}
static DEVICE_ATTR_RO(formats);

static ssize_t max_width_show(struct device *d, struct device_attribute *attr,
			      char *buf)
{
	return sysfs_emit(buf, "%u\n", VCAM_MAX_WIDTH);
}
static DEVICE_ATTR_RO(max_width);

static ssize_t max_height_show(struct device *d,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", VCAM_MAX_HEIGHT);
}
static DEVICE_ATTR_RO(max_height);

static ssize_t max_frames_show(struct device *d,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", VCAM_MAX_FRAMES);
}
static DEVICE_ATTR_RO(max_frames);

/* ---------------------------------------------------------------------- */
/* Limits                                                                  */

/**
 * struct vcam_limit - a module parameter with a range
 * @value: the limit; read once per CREATE, so writing it (root, through
 *	/sys/module/vcam/parameters/) never touches existing cameras
 * @max: the largest value accepted; the smallest is 1
 */
struct vcam_limit {
	unsigned int value;
	unsigned int max;
};

/*
 * 256 video minors are shared with every other V4L2 driver (a UVC webcam
 * takes two); when vcam took them all, every other video_register_device()
 * failed with ENFILE. 64 leaves three quarters of them to the rest.
 */
static struct vcam_limit max_cameras = { .value = 64, .max = 256 };
/* A quarter of the global limit: at least four users fit side by side */
static struct vcam_limit max_cameras_per_user = { .value = 16, .max = 256 };
/*
 * 1 GiB: a 4K (3840x2160) YUYV camera with all 32 slots and 32 capture
 * buffers needs 1013 MiB. Up to 1 TiB may be set.
 */
static struct vcam_limit max_camera_mb = { .value = 1024, .max = 1U << 20 };

static int vcam_limit_set(const char *val, const struct kernel_param *kp)
{
	struct vcam_limit *limit = kp->arg;
	unsigned int n;
	int ret;

	ret = kstrtouint(val, 0, &n);
	if (ret)
		return ret;
	if (n < 1 || n > limit->max)
		return -EINVAL;
	WRITE_ONCE(limit->value, n);
	return 0;
}

static int vcam_limit_get(char *buf, const struct kernel_param *kp)
{
	const struct vcam_limit *limit = kp->arg;

	return scnprintf(buf, PAGE_SIZE, "%u\n", READ_ONCE(limit->value));
}

static const struct kernel_param_ops vcam_limit_ops = {
	.set	= vcam_limit_set,
	.get	= vcam_limit_get,
};

module_param_cb(max_cameras, &vcam_limit_ops, &max_cameras, 0644);
MODULE_PARM_DESC(max_cameras,
		 "Cameras at once, all users (1-256; CREATE: ENOSPC)");
module_param_cb(max_cameras_per_user, &vcam_limit_ops, &max_cameras_per_user,
		0644);
MODULE_PARM_DESC(max_cameras_per_user,
		 "Cameras at once per uid (1-256; CREATE: EDQUOT)");
module_param_cb(max_camera_mb, &vcam_limit_ops, &max_camera_mb, 0644);
MODULE_PARM_DESC(max_camera_mb,
		 "MiB of slot and capture buffers per camera (CREATE: EFBIG)");

/**
 * vcam_camera_mem_limit() - the memory a new camera may pin
 *
 * Return: max_camera_mb in bytes.
 */
u64 vcam_camera_mem_limit(void)
{
	return (u64)READ_ONCE(max_camera_mb.value) << 20;
}

/**
 * struct vcam_user - the cameras of one uid
 * @list: entry in vcam_users
 * @uid: the real uid of the files that created them
 * @cameras: how many exist (created and not yet freed)
 */
struct vcam_user {
	struct list_head list;
	kuid_t uid;
	unsigned int cameras;
};

/* Protects vcam_users, every vcam_user and vcam_nr_cameras */
static DEFINE_MUTEX(vcam_users_lock);
static LIST_HEAD(vcam_users);
static unsigned int vcam_nr_cameras;

/**
 * vcam_user_charge() - count a new camera against the camera limits
 * @uid: the real uid of the creating file's credentials
 * @user: set to what vcam_user_uncharge() takes back
 *
 * Return: 0, -EDQUOT when @uid has max_cameras_per_user cameras already,
 * -ENOSPC when all users together have max_cameras, or -ENOMEM.
 */
int vcam_user_charge(kuid_t uid, struct vcam_user **user)
{
	struct vcam_user *u, *new;
	int ret = 0;

	/* Allocated up front: most CREATEs are a user's first camera */
	new = kzalloc(sizeof(*new), GFP_KERNEL_ACCOUNT);
	if (!new)
		return -ENOMEM;

	mutex_lock(&vcam_users_lock);
	list_for_each_entry(u, &vcam_users, list)
		if (uid_eq(u->uid, uid))
			goto found;
	u = NULL;
found:
	/* The user's own limit first: it is the one the user can act on */
	if (u && u->cameras >= READ_ONCE(max_cameras_per_user.value))
		ret = -EDQUOT;
	else if (vcam_nr_cameras >= READ_ONCE(max_cameras.value))
		ret = -ENOSPC;
	if (ret)
		goto unlock;

	if (!u) {
		u = new;
		new = NULL;
		u->uid = uid;
		list_add(&u->list, &vcam_users);
	}
	u->cameras++;
	vcam_nr_cameras++;
	*user = u;
unlock:
	mutex_unlock(&vcam_users_lock);
	kfree(new);
	return ret;
}

/**
 * vcam_user_uncharge() - give a camera's share of the limits back
 * @user: what vcam_user_charge() set; called exactly once for it
 */
void vcam_user_uncharge(struct vcam_user *user)
{
	mutex_lock(&vcam_users_lock);
	vcam_nr_cameras--;
	if (!--user->cameras) {
		list_del(&user->list);
		kfree(user);
	}
	mutex_unlock(&vcam_users_lock);
}

/* ---------------------------------------------------------------------- */

static struct attribute *vcam_misc_attrs[] = {
	&dev_attr_formats.attr,
	&dev_attr_max_width.attr,
	&dev_attr_max_height.attr,
	&dev_attr_max_frames.attr,
	NULL
};
ATTRIBUTE_GROUPS(vcam_misc);

struct miscdevice vcam_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= VCAM_DRIVER_NAME,
	.fops	= &vcam_ctrl_fops,
	.groups	= vcam_misc_groups,
};

static int __init vcam_init(void)
{
	return misc_register(&vcam_misc);
}

static void __exit vcam_exit(void)
{
	misc_deregister(&vcam_misc);
}

module_init(vcam_init);
module_exit(vcam_exit);

MODULE_DESCRIPTION("V4L2 virtual camera fed with DMA-BUFs");
MODULE_AUTHOR("The vcam authors");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.1.0");
VCAM_IMPORT_NS_DMA_BUF();
