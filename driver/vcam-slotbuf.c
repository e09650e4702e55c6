// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam - the output slots' driver-allocated buffers, exported as DMA-BUFs
 *
 * A producer on a system without a DMA-BUF allocator (no DMA-BUF heaps, no
 * udmabuf: Debian 12's 6.1 kernel) writes its frames into memory the driver
 * allocates, one buffer per slot. Each buffer is a DMA-BUF exported by vcam
 * itself, so the same memory is:
 *
 *  - queued with %VCAM_QUEUE_FD_DRIVER, or by an fd of it;
 *  - mapped by the producer through the control file (at the slot's offset)
 *    or through an fd of it;
 *  - handed to a consumer with %VCAM_IOC_EXPORT, whose capture buffers then
 *    import it and get the zero-copy path, as with any other DMA-BUF.
 *
 * The memory is zeroed vmalloc memory: the CPU address is there for the copy
 * path and for importers that vmap (vb2_vmalloc), the pages for mmap() and
 * for importers that map it for a device. It is charged to the memory cgroup
 * of the process that makes it (__GFP_ACCOUNT), so a container's limit holds;
 * vmalloc_user() cannot charge, and __vmalloc_node_range() with VM_USERMAP is
 * not exported, so mmap() inserts the pages itself.
 */

#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/iosys-map.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "vcam-core.h"
#include "vcam-compat.h"

/**
 * struct vcam_slotbuf - the memory behind a slot's DMA-BUF
 * @vaddr: the vmalloc_user() memory
 * @size: its size in bytes, a multiple of the page size
 *
 * Owned by the DMA-BUF: freed when its last reference (the slot's, a
 * producer's or a consumer's fd, a mapping) is gone, so it may outlive the
 * camera.
 */
struct vcam_slotbuf {
	void *vaddr;
	unsigned long size;
};

/**
 * struct vcam_slotbuf_attachment - a device's view of a slot's buffer
 * @sgt: the pages, one entry each
 * @dir: the direction @sgt is mapped for, %DMA_NONE while unmapped
 */
struct vcam_slotbuf_attachment {
	struct sg_table sgt;
	enum dma_data_direction dir;
};

static int vcam_slotbuf_attach(struct dma_buf *dbuf,
			       struct dma_buf_attachment *attach)
{
	struct vcam_slotbuf *buf = dbuf->priv;
	struct vcam_slotbuf_attachment *att;
	struct scatterlist *sg;
	unsigned int i;
	int ret;

	att = kzalloc(sizeof(*att), GFP_KERNEL_ACCOUNT);
	if (!att)
		return -ENOMEM;
	ret = sg_alloc_table(&att->sgt, buf->size >> PAGE_SHIFT,
			     GFP_KERNEL_ACCOUNT);
	if (ret) {
		kfree(att);
		return ret;
	}
	for_each_sgtable_sg(&att->sgt, sg, i)
		sg_set_page(sg, vmalloc_to_page(buf->vaddr + i * PAGE_SIZE),
			    PAGE_SIZE, 0);
	att->dir = DMA_NONE;
	attach->priv = att;
	return 0;
}

static void vcam_slotbuf_detach(struct dma_buf *dbuf,
				struct dma_buf_attachment *attach)
{
	struct vcam_slotbuf_attachment *att = attach->priv;

	if (att->dir != DMA_NONE)
		dma_unmap_sgtable(attach->dev, &att->sgt, att->dir, 0);
	sg_free_table(&att->sgt);
	kfree(att);
}

/* The mapping is kept until the device detaches, or asks for another one */
static struct sg_table *vcam_slotbuf_map(struct dma_buf_attachment *attach,
					 enum dma_data_direction dir)
{
	struct vcam_slotbuf_attachment *att = attach->priv;

	if (att->dir == dir)
		return &att->sgt;
	if (att->dir != DMA_NONE) {
		dma_unmap_sgtable(attach->dev, &att->sgt, att->dir, 0);
		att->dir = DMA_NONE;
	}
	if (dma_map_sgtable(attach->dev, &att->sgt, dir, 0))
		return ERR_PTR(-EIO);
	att->dir = dir;
	return &att->sgt;
}

static void vcam_slotbuf_unmap(struct dma_buf_attachment *attach,
			       struct sg_table *sgt,
			       enum dma_data_direction dir)
{
}

static int vcam_slotbuf_vmap(struct dma_buf *dbuf, struct iosys_map *map)
{
	struct vcam_slotbuf *buf = dbuf->priv;

	iosys_map_set_vaddr(map, buf->vaddr);
	return 0;
}

/* What remap_vmalloc_range() does, which wants vmalloc_user() memory */
static int vcam_slotbuf_mmap(struct dma_buf *dbuf, struct vm_area_struct *vma)
{
	struct vcam_slotbuf *buf = dbuf->priv;
	unsigned long off = vma->vm_pgoff << PAGE_SHIFT;
	unsigned long addr;
	int ret;

	if (vma->vm_pgoff >= buf->size >> PAGE_SHIFT ||
	    vma->vm_end - vma->vm_start > buf->size - off)
		return -EINVAL;
	for (addr = vma->vm_start; addr < vma->vm_end;
	     addr += PAGE_SIZE, off += PAGE_SIZE) {
		ret = vm_insert_page(vma, addr,
				     vmalloc_to_page(buf->vaddr + off));
		if (ret)
			return ret;
	}
	vcam_vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	return 0;
}

static void vcam_slotbuf_release(struct dma_buf *dbuf)
{
	struct vcam_slotbuf *buf = dbuf->priv;

	vfree(buf->vaddr);
	kfree(buf);
}

static const struct dma_buf_ops vcam_slotbuf_ops = {
	.attach		= vcam_slotbuf_attach,
	.detach		= vcam_slotbuf_detach,
	.map_dma_buf	= vcam_slotbuf_map,
	.unmap_dma_buf	= vcam_slotbuf_unmap,
	.vmap		= vcam_slotbuf_vmap,
	.mmap		= vcam_slotbuf_mmap,
	.release	= vcam_slotbuf_release,
};

/* A new DMA-BUF of @size bytes (rounded up to pages), zero-filled */
static struct dma_buf *vcam_slotbuf_create(unsigned long size)
{
	DEFINE_DMA_BUF_EXPORT_INFO(exp);
	struct vcam_slotbuf *buf;
	struct dma_buf *dbuf;

	buf = kzalloc(sizeof(*buf), GFP_KERNEL_ACCOUNT);
	if (!buf)
		return ERR_PTR(-ENOMEM);
	buf->size = PAGE_ALIGN(size);
	/* Zeroed: the pages go to user space */
	buf->vaddr = __vmalloc(buf->size, GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!buf->vaddr) {
		dbuf = ERR_PTR(-ENOMEM);
		goto free_buf;
	}

	exp.ops = &vcam_slotbuf_ops;
	exp.size = buf->size;
	exp.flags = O_RDWR;
	exp.priv = buf;
	dbuf = dma_buf_export(&exp);
	if (IS_ERR(dbuf))
		goto free_mem;
	return dbuf;

free_mem:
	vfree(buf->vaddr);
free_buf:
	kfree(buf);
	return dbuf;
}

/**
 * vcam_slot_mem_size() - size of a slot's driver-allocated buffer
 * @dev: the camera
 *
 * Return: the frame size rounded up to the page size; slot i is mapped at
 * i times this offset of the control file.
 */
unsigned long vcam_slot_mem_size(struct vcam_device *dev)
{
	return PAGE_ALIGN(dev->fmt.sizeimage);
}

/**
 * vcam_slot_dbuf() - a slot's driver-allocated DMA-BUF, made on first use
 * @dev: the camera
 * @index: the slot, < &vcam_device.nr_slots
 *
 * The slot keeps its reference until the control file is released
 * (vcam_frames_release()); a caller that hands the DMA-BUF on takes a
 * reference of its own.
 *
 * Return: the DMA-BUF, or an ERR_PTR() when it cannot be made.
 */
struct dma_buf *vcam_slot_dbuf(struct vcam_device *dev, unsigned int index)
{
	struct vcam_out_buf *out = &dev->slots[index];
	struct dma_buf *dbuf, *old;

	/*
	 * No lock: this runs under mmap_lock (mmap) and without it (QUEUE,
	 * EXPORT), while vb2 takes mmap_lock under the camera mutex. The first
	 * buffer to be published wins.
	 */
	dbuf = smp_load_acquire(&out->own_dbuf);
	if (dbuf)
		return dbuf;
	dbuf = vcam_slotbuf_create(vcam_slot_mem_size(dev));
	if (IS_ERR(dbuf))
		return dbuf;
	old = cmpxchg(&out->own_dbuf, NULL, dbuf);
	if (old) {
		dma_buf_put(dbuf);
		return old;
	}
	return dbuf;
}
