// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam-bench - frames per second and CPU per frame through one vcam camera
 *
 *   vcam-bench zero-copy|copy WIDTH HEIGHT SECONDS
 *
 * One process plays both sides with YUYV frames from /dev/dma_heap/system
 * (or, without it, the slots' own buffers exported by the driver):
 * the producer queues DMA-BUFs into the camera's output slots, the consumer
 * captures them. In zero-copy mode the capture buffers import the
 * producer's DMA-BUFs (V4L2_MEMORY_DMABUF), so the driver moves metadata
 * only; in copy mode they are driver-allocated (V4L2_MEMORY_MMAP) and the
 * driver copies each frame. Neither side touches the pixels, so the numbers
 * are the cost of the transport itself.
 *
 * CPU is read from /proc/stat (all CPUs, everything but idle and iowait),
 * because the driver's frame path runs in a kernel worker that the
 * process's own rusage would not see; a run of a few seconds makes its
 * 10 ms ticks small against the total. Prints one JSON object.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/videodev2.h>
#include <linux/vcam.h>

#define SLOTS 4

static void die(const char *what)
{
	fprintf(stderr, "vcam-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int xioctl(int fd, unsigned long request, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, request, arg);
	} while (ret < 0 && errno == EINTR);
	return ret;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Busy CPU time of the whole system in seconds (USER_HZ ticks summed). */
static double busy_cpu_seconds(void)
{
	unsigned long long user, nice, system, idle, iowait, irq, softirq;
	FILE *stat = fopen("/proc/stat", "r");

	if (!stat)
		die("/proc/stat");
	if (fscanf(stat, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice,
		   &system, &idle, &iowait, &irq, &softirq) != 7)
		die("parsing /proc/stat");
	fclose(stat);
	return (double)(user + nice + system + irq + softirq) /
	       sysconf(_SC_CLK_TCK);
}

/*
 * A DMA-BUF for output slot INDEX: from the system heap, or on kernels
 * without one (6.1) the slot's own driver-allocated buffer.
 */
static int slot_dmabuf(int ctrl, unsigned int index, size_t len)
{
	struct dma_heap_allocation_data alloc = {
		.len = len,
		.fd_flags = O_RDWR | O_CLOEXEC,
	};
	struct vcam_ioc_export export = { .index = index, .flags = O_CLOEXEC };
	int heap = open("/dev/dma_heap/system", O_RDWR | O_CLOEXEC);

	if (heap < 0 && errno == ENOENT) {
		if (xioctl(ctrl, VCAM_IOC_EXPORT, &export) < 0)
			die("VCAM_IOC_EXPORT");
		return export.fd;
	}
	if (heap < 0)
		die("/dev/dma_heap/system");
	if (xioctl(heap, DMA_HEAP_IOCTL_ALLOC, &alloc) < 0)
		die("DMA_HEAP_IOCTL_ALLOC");
	close(heap);
	return alloc.fd;
}

int main(int argc, char **argv)
{
	struct vcam_frame frames[SLOTS];
	struct vcam_ioc_create create = { 0 };
	int dmabuf[SLOTS], ctrl, video, zero_copy, i;
	unsigned int width, height, done;
	double seconds, t0, cpu0, wall, cpu;
	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	char path[32];

	if (argc != 5 || (strcmp(argv[1], "zero-copy") && strcmp(argv[1], "copy"))) {
		fprintf(stderr, "usage: vcam-bench zero-copy|copy WIDTH HEIGHT SECONDS\n");
		return 2;
	}
	zero_copy = !strcmp(argv[1], "zero-copy");
	width = atoi(argv[2]);
	height = atoi(argv[3]);
	seconds = atof(argv[4]);

	ctrl = open("/dev/vcam", O_RDWR | O_CLOEXEC);
	if (ctrl < 0)
		die("/dev/vcam");
	create.device_name = (uintptr_t)"vcam bench";
	create.width = width;
	create.height = height;
	create.pixelformat = V4L2_PIX_FMT_YUYV;
	create.nr_frames = SLOTS;
	create.frames = (uintptr_t)frames;
	if (xioctl(ctrl, VCAM_IOC_CREATE, &create) < 0)
		die("VCAM_IOC_CREATE");
	for (i = 0; i < SLOTS; i++)
		dmabuf[i] = slot_dmabuf(ctrl, i, frames[i].length);

	snprintf(path, sizeof(path), "/dev/video%u", create.device_nr);
	video = open(path, O_RDWR | O_CLOEXEC);
	if (video < 0)
		die(path);
	struct v4l2_requestbuffers req = {
		.count = SLOTS,
		.type = type,
		.memory = zero_copy ? V4L2_MEMORY_DMABUF : V4L2_MEMORY_MMAP,
	};
	if (xioctl(video, VIDIOC_REQBUFS, &req) < 0 || req.count != SLOTS)
		die("VIDIOC_REQBUFS");
	for (i = 0; i < SLOTS; i++) {
		struct v4l2_buffer buf = {
			.index = i, .type = type, .memory = req.memory,
		};

		if (zero_copy) {
			buf.m.fd = dmabuf[i];
			buf.length = frames[i].length;
		}
		if (xioctl(video, VIDIOC_QBUF, &buf) < 0)
			die("VIDIOC_QBUF");
	}
	if (xioctl(video, VIDIOC_STREAMON, &type) < 0)
		die("VIDIOC_STREAMON");

	t0 = now_seconds();
	cpu0 = busy_cpu_seconds();
	for (i = 0; i < SLOTS; i++) {
		struct vcam_ioc_queue q = { .fd = dmabuf[i], .index = i };

		if (xioctl(ctrl, VCAM_IOC_QUEUE, &q) < 0)
			die("VCAM_IOC_QUEUE");
	}
	/*
	 * Steady state: a captured frame is handed back, which frees its
	 * output slot, which the producer refills at once.
	 */
	for (done = 0; now_seconds() - t0 < seconds; done++) {
		struct v4l2_buffer buf = { .type = type, .memory = req.memory };
		struct vcam_ioc_dequeue dq = { 0 };

		if (xioctl(video, VIDIOC_DQBUF, &buf) < 0)
			die("VIDIOC_DQBUF");
		if (buf.flags & V4L2_BUF_FLAG_ERROR) {
			fprintf(stderr, "vcam-bench: frame %u completed with an error\n", done);
			return 1;
		}
		if (zero_copy)
			buf.m.fd = dmabuf[buf.index];
		if (xioctl(video, VIDIOC_QBUF, &buf) < 0)
			die("VIDIOC_QBUF");
		if (xioctl(ctrl, VCAM_IOC_DEQUEUE, &dq) < 0)
			die("VCAM_IOC_DEQUEUE");
		struct vcam_ioc_queue q = { .fd = dmabuf[dq.index], .index = dq.index };

		if (xioctl(ctrl, VCAM_IOC_QUEUE, &q) < 0)
			die("VCAM_IOC_QUEUE");
	}
	wall = now_seconds() - t0;
	cpu = busy_cpu_seconds() - cpu0;

	printf("{\"mode\": \"%s\", \"width\": %u, \"height\": %u, \"frames\": %u, "
	       "\"bytes_per_frame\": %u, \"seconds\": %.6f, \"fps\": %.1f, "
	       "\"cpu_us_per_frame\": %.1f}\n",
	       argv[1], width, height, done, frames[0].length, wall,
	       done / wall, cpu * 1e6 / done);

	xioctl(video, VIDIOC_STREAMOFF, &type);
	close(video);
	for (i = 0; i < SLOTS; i++)
		close(dmabuf[i]);
	close(ctrl);
	return 0;
}
