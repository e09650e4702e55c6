// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam - a V4L2 virtual camera fed with DMA-BUFs, zero-copy when shared
 *
 * Module entry points and the control node's misc device with its
 * read-only attributes.
 */

#include <linux/device.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/sysfs.h>

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
