// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam-bench - frames per second and CPU per frame through one vcam camera
 *
 *   vcam-bench zero-copy|copy WIDTH HEIGHT SECONDS
 *   vcam-bench loopback WIDTH HEIGHT SECONDS /dev/videoN
 *   vcam-bench memcpy WIDTH HEIGHT SECONDS
 *   vcam-bench capture WIDTH HEIGHT SECONDS /dev/videoN
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
 * loopback runs the same loop through a v4l2loopback device, the way its
 * users feed it: the producer write()s each frame into the output side
 * (the driver copies it into its own buffer), the consumer captures with
 * MMAP buffers. memcpy copies a frame from one of SLOTS buffers into
 * another, the bound for any path that copies each frame once. capture
 * is the consumer alone, MMAP, for a producer in another process (the
 * Python rows of bench/pyrows.py); its clock starts at the first frame.
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
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/videodev2.h>
#include <linux/vcam.h>

#define SLOTS 4
#define MEMCPY_PIECE (1 << 20)

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

/* What a mode measured, for the one JSON line. */
struct result {
	unsigned int frames, bytes_per_frame;
	double wall, cpu;
};

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

static struct result run_vcam(int zero_copy, unsigned int width,
			      unsigned int height, double seconds)
{
	struct vcam_frame frames[SLOTS];
	struct vcam_ioc_create create = { 0 };
	int dmabuf[SLOTS], ctrl, video, i;
	unsigned int done;
	double t0, cpu0;
	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	struct result r;
	char path[32];

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
			exit(1);
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
	r.wall = now_seconds() - t0;
	r.cpu = busy_cpu_seconds() - cpu0;
	r.frames = done;
	r.bytes_per_frame = frames[0].length;

	xioctl(video, VIDIOC_STREAMOFF, &type);
	close(video);
	for (i = 0; i < SLOTS; i++)
		close(dmabuf[i]);
	close(ctrl);
	return r;
}

/*
 * v4l2loopback with exclusive_caps=0: one node, opened once per side. The
 * first write() sets the output streaming; then each write() is one frame
 * and the capture side's DQBUF waits for it.
 */
static struct result run_loopback(const char *path, unsigned int width,
				  unsigned int height, double seconds)
{
	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	struct v4l2_format fmt = { .type = V4L2_BUF_TYPE_VIDEO_OUTPUT };
	struct v4l2_requestbuffers req = {
		.count = SLOTS, .type = type, .memory = V4L2_MEMORY_MMAP,
	};
	int out, cap, i;
	unsigned int done, size;
	double t0, cpu0;
	struct result r;
	char *frame;

	out = open(path, O_RDWR | O_CLOEXEC);
	if (out < 0)
		die(path);
	fmt.fmt.pix.width = width;
	fmt.fmt.pix.height = height;
	fmt.fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV;
	fmt.fmt.pix.field = V4L2_FIELD_NONE;
	if (xioctl(out, VIDIOC_S_FMT, &fmt) < 0)
		die("VIDIOC_S_FMT (output)");
	if (fmt.fmt.pix.width != width || fmt.fmt.pix.height != height) {
		fprintf(stderr, "vcam-bench: %s took %ux%u for %ux%u\n", path,
			fmt.fmt.pix.width, fmt.fmt.pix.height, width, height);
		exit(1);
	}
	size = fmt.fmt.pix.sizeimage;
	frame = malloc(size);
	if (!frame)
		die("malloc");
	memset(frame, 0x80, size);
	if (write(out, frame, size) != (ssize_t)size)
		die("write (first frame)");

	cap = open(path, O_RDWR | O_CLOEXEC);
	if (cap < 0)
		die(path);
	if (xioctl(cap, VIDIOC_REQBUFS, &req) < 0 || req.count < 2)
		die("VIDIOC_REQBUFS (capture)");
	for (i = 0; i < (int)req.count; i++) {
		struct v4l2_buffer buf = {
			.index = i, .type = type, .memory = req.memory,
		};

		if (xioctl(cap, VIDIOC_QBUF, &buf) < 0)
			die("VIDIOC_QBUF");
	}
	if (xioctl(cap, VIDIOC_STREAMON, &type) < 0)
		die("VIDIOC_STREAMON");

	t0 = now_seconds();
	cpu0 = busy_cpu_seconds();
	for (done = 0; now_seconds() - t0 < seconds; done++) {
		struct v4l2_buffer buf = { .type = type, .memory = req.memory };

		if (write(out, frame, size) != (ssize_t)size)
			die("write");
		if (xioctl(cap, VIDIOC_DQBUF, &buf) < 0)
			die("VIDIOC_DQBUF");
		if (xioctl(cap, VIDIOC_QBUF, &buf) < 0)
			die("VIDIOC_QBUF");
	}
	r.wall = now_seconds() - t0;
	r.cpu = busy_cpu_seconds() - cpu0;
	r.frames = done;
	r.bytes_per_frame = size;

	xioctl(cap, VIDIOC_STREAMOFF, &type);
	close(cap);
	close(out);
	free(frame);
	return r;
}

/* MMAP capture from a device another process feeds. */
static struct result run_capture(const char *path, unsigned int width,
				 unsigned int height, double seconds)
{
	enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	struct v4l2_format fmt = { .type = type };
	struct v4l2_requestbuffers req = {
		.count = SLOTS, .type = type, .memory = V4L2_MEMORY_MMAP,
	};
	struct v4l2_buffer buf = { .type = type, .memory = V4L2_MEMORY_MMAP };
	unsigned int done;
	double t0, cpu0;
	struct result r;
	int cap, i;

	cap = open(path, O_RDWR | O_CLOEXEC);
	if (cap < 0)
		die(path);
	if (xioctl(cap, VIDIOC_G_FMT, &fmt) < 0)
		die("VIDIOC_G_FMT");
	if (fmt.fmt.pix.width != width || fmt.fmt.pix.height != height) {
		fprintf(stderr, "vcam-bench: %s has %ux%u, not %ux%u\n", path,
			fmt.fmt.pix.width, fmt.fmt.pix.height, width, height);
		exit(1);
	}
	if (xioctl(cap, VIDIOC_REQBUFS, &req) < 0 || req.count < 2)
		die("VIDIOC_REQBUFS");
	for (i = 0; i < (int)req.count; i++) {
		struct v4l2_buffer b = {
			.index = i, .type = type, .memory = req.memory,
		};

		if (xioctl(cap, VIDIOC_QBUF, &b) < 0)
			die("VIDIOC_QBUF");
	}
	if (xioctl(cap, VIDIOC_STREAMON, &type) < 0)
		die("VIDIOC_STREAMON");
	/* the first frame: the producer is past its start-up */
	if (xioctl(cap, VIDIOC_DQBUF, &buf) < 0 || xioctl(cap, VIDIOC_QBUF, &buf) < 0)
		die("VIDIOC_DQBUF");

	t0 = now_seconds();
	cpu0 = busy_cpu_seconds();
	for (done = 0; now_seconds() - t0 < seconds; done++) {
		if (xioctl(cap, VIDIOC_DQBUF, &buf) < 0)
			die("VIDIOC_DQBUF");
		if (xioctl(cap, VIDIOC_QBUF, &buf) < 0)
			die("VIDIOC_QBUF");
	}
	r.wall = now_seconds() - t0;
	r.cpu = busy_cpu_seconds() - cpu0;
	r.frames = done;
	r.bytes_per_frame = fmt.fmt.pix.sizeimage;
	xioctl(cap, VIDIOC_STREAMOFF, &type);
	close(cap);
	return r;
}

/* One frame's memcpy between SLOTS buffer pairs, as a copying path does. */
static struct result run_memcpy(unsigned int width, unsigned int height,
				double seconds)
{
	size_t size = (size_t)width * height * 2;
	char *src[SLOTS], *dst[SLOTS];
	unsigned int done;
	double t0, cpu0;
	struct result r;
	int i;

	for (i = 0; i < SLOTS; i++) {
		src[i] = malloc(size);
		dst[i] = malloc(size);
		if (!src[i] || !dst[i])
			die("malloc");
		/* fault every page in before the clock starts */
		memset(src[i], i, size);
		memset(dst[i], 0, size);
	}
	t0 = now_seconds();
	cpu0 = busy_cpu_seconds();
	for (done = 0; now_seconds() - t0 < seconds; done++) {
		char *d = dst[done % SLOTS], *s = src[done % SLOTS];
		size_t at;

		/*
		 * In pieces below glibc's non-temporal threshold: the kernel's
		 * copy never uses non-temporal stores; under TCG one 16 MiB
		 * memcpy by glibc ran at 7 frames/s where vcam copied 89.
		 */
		for (at = 0; at < size; at += MEMCPY_PIECE)
			memcpy(d + at, s + at, size - at < MEMCPY_PIECE ? size - at : MEMCPY_PIECE);
		/* the copy is never read: keep the compiler from dropping it */
		__asm__ volatile("" : : "r"(d) : "memory");
	}
	r.wall = now_seconds() - t0;
	r.cpu = busy_cpu_seconds() - cpu0;
	r.frames = done;
	r.bytes_per_frame = size;
	for (i = 0; i < SLOTS; i++) {
		free(src[i]);
		free(dst[i]);
	}
	return r;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int loopback = !strcmp(mode, "loopback"), capture = !strcmp(mode, "capture");
	unsigned int width, height;
	double seconds;
	struct result r;

	if (argc != 5 + (loopback || capture) ||
	    (!loopback && !capture && strcmp(mode, "zero-copy") &&
	     strcmp(mode, "copy") && strcmp(mode, "memcpy"))) {
		fprintf(stderr, "usage: vcam-bench zero-copy|copy|memcpy WIDTH HEIGHT SECONDS\n"
				"       vcam-bench loopback|capture WIDTH HEIGHT SECONDS /dev/videoN\n");
		return 2;
	}
	width = atoi(argv[2]);
	height = atoi(argv[3]);
	seconds = atof(argv[4]);

	if (loopback)
		r = run_loopback(argv[5], width, height, seconds);
	else if (capture)
		r = run_capture(argv[5], width, height, seconds);
	else if (!strcmp(mode, "memcpy"))
		r = run_memcpy(width, height, seconds);
	else
		r = run_vcam(!strcmp(mode, "zero-copy"), width, height, seconds);

	printf("{\"mode\": \"%s\", \"width\": %u, \"height\": %u, \"frames\": %u, "
	       "\"bytes_per_frame\": %u, \"seconds\": %.6f, \"fps\": %.1f, "
	       "\"cpu_us_per_frame\": %.1f}\n",
	       mode, width, height, r.frames, r.bytes_per_frame, r.wall,
	       r.frames / r.wall, r.cpu * 1e6 / r.frames);
	return 0;
}
