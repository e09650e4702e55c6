/* SPDX-License-Identifier: GPL-2.0+ */
/*
 * vcam - every difference between the kernel versions vcam builds against
 *
 * Nothing outside this file tests the kernel version. Targets: 6.1 LTS,
 * 6.12 LTS (the main one) and the newest stable kernel.
 */
#ifndef _VCAM_COMPAT_H
#define _VCAM_COMPAT_H

#include <linux/dma-buf.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/version.h>
#include <media/videobuf2-v4l2.h>

/* The one place that reads the kernel version */
#define VCAM_KERNEL_AT_LEAST(a, b, c) \
	(KERNEL_VERSION(a, b, c) <= LINUX_VERSION_CODE)

/*
 * 6.13 turned the symbol namespace argument of MODULE_IMPORT_NS() into a
 * string literal.
 */
#if VCAM_KERNEL_AT_LEAST(6, 13, 0)
#define VCAM_IMPORT_NS_DMA_BUF()	MODULE_IMPORT_NS("DMA_BUF")
#else
#define VCAM_IMPORT_NS_DMA_BUF()	MODULE_IMPORT_NS(DMA_BUF)
#endif

/*
 * 7.0 dropped vb2_ops.wait_prepare/wait_finish: the core now always drops
 * and retakes vb2_queue.lock around a blocking wait. Before that, a driver
 * with a queue lock had to name the helpers that do it.
 */
#if !VCAM_KERNEL_AT_LEAST(7, 0, 0)
#define VCAM_VB2_HAS_WAIT_OPS		1
#else
#define VCAM_VB2_HAS_WAIT_OPS		0
#endif

/*
 * 6.8 renamed vb2_queue.min_buffers_needed to min_queued_buffers.
 */
static inline void vcam_vb2_set_min_queued(struct vb2_queue *q, u32 n)
{
#if VCAM_KERNEL_AT_LEAST(6, 8, 0)
	q->min_queued_buffers = n;
#else
	q->min_buffers_needed = n;
#endif
}

/*
 * 6.8 keeps a queue's buffers in a bitmap of max_num_buffers entries, with
 * holes; before, they were the first num_buffers. vb2_get_buffer() answers
 * NULL for an index without a buffer either way.
 */
static inline unsigned int vcam_vb2_buffer_indexes(struct vb2_queue *q)
{
#if VCAM_KERNEL_AT_LEAST(6, 8, 0)
	return q->max_num_buffers;
#else
	return q->num_buffers;
#endif
}

/*
 * 6.3 made vm_area_struct.vm_flags read-only behind vm_flags_set().
 */
static inline void vcam_vm_flags_set(struct vm_area_struct *vma,
				     unsigned long flags)
{
#if VCAM_KERNEL_AT_LEAST(6, 3, 0)
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

/*
 * 6.2 split dma_buf_vmap() into a variant that expects the reservation lock
 * held and an _unlocked one that takes it; 6.1 only has the self-locking
 * dma_buf_vmap().
 */
static inline int vcam_dma_buf_vmap(struct dma_buf *dbuf, struct iosys_map *map)
{
#if VCAM_KERNEL_AT_LEAST(6, 2, 0)
	return dma_buf_vmap_unlocked(dbuf, map);
#else
	return dma_buf_vmap(dbuf, map);
#endif
}

static inline void vcam_dma_buf_vunmap(struct dma_buf *dbuf,
				       struct iosys_map *map)
{
#if VCAM_KERNEL_AT_LEAST(6, 2, 0)
	dma_buf_vunmap_unlocked(dbuf, map);
#else
	dma_buf_vunmap(dbuf, map);
#endif
}

#endif /* _VCAM_COMPAT_H */
