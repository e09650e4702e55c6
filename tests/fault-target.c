// SPDX-License-Identifier: GPL-2.0+
/*
 * fault-target - small vcam processes for the fault tests to kill
 *
 *   fault-target producer WIDTH HEIGHT SLOTS USEC
 *   fault-target consumer /dev/videoN mmap|dmabuf stream|poll|gap|hold [PID FD...]
 *   fault-target cycles COUNT WIDTH HEIGHT
 *
 * Python costs about a second to start in the emulated guest; these start
 * in milliseconds, so a test can kill a hundred of them.
 *
 * producer: makes a camera with SLOTS slots, each a DMA-BUF from
 * /dev/dma_heap/system (or, without one, the slot's own buffer exported by
 * the driver), prints "ready NR PID FD..." (its camera's N, its pid and
 * the slots' DMA-BUF descriptors), then keeps every slot queued: DEQUEUE
 * (blocking), USEC microseconds of sleep, QUEUE, until it is killed.
 *
 * consumer: captures from /dev/videoN into MMAP buffers, or into DMABUF
 * ones importing the producer's DMA-BUFs (taken from process PID with
 * pidfd_getfd), and stops at STAGE:
 *   stream  DQBUF (blocking) and QBUF for ever; "streaming" after the first frame
 *   poll    the same with poll() before each DQBUF
 *   gap     every buffer queued, no STREAMON: prints "queued" and waits
 *   hold    one frame dequeued, mapped, read and never queued back:
 *           prints "holding" and waits
 * A failed call prints "error CALL ERRNO-NAME" and exits 3: what a
 * consumer sees when its producer goes away.
 *
 * cycles: COUNT times a camera made, streamed one frame through and
 * destroyed in one process, alternating copy and zero-copy capture and
 * which side closes first; every third cycle closes with a frame pending
 * and the capture side still streaming. Prints "cycles COUNT SECONDS".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/videodev2.h>
#include <linux/vcam.h>

#define MAX_SLOTS 32

static const enum v4l2_buf_type cap_type = V4L2_BUF_TYPE_VIDEO_CAPTURE;

static const char *errno_name(int e)
{
	switch (e) {
	case EPIPE: return "EPIPE";
	case ENODEV: return "ENODEV";
	case EIO: return "EIO";
	case EINVAL: return "EINVAL";
	case EBUSY: return "EBUSY";
	case ENOENT: return "ENOENT";
	case EAGAIN: return "EAGAIN";
	default: return "other";
	}
}

/* A call that failed: one line naming it and its errno, status 3. */
static void fail(const char *call)
{
	int e = errno;

	printf("error %s %s %d\n", call, errno_name(e), e);
	fflush(stdout);
	exit(3);
}

static int xioctl(int fd, unsigned long request, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, request, arg);
	} while (ret < 0 && errno == EINTR);
	return ret;
}

static void say(const char *line)
{
	printf("%s\n", line);
	fflush(stdout);
}

/* A DMA-BUF for slot INDEX: the system heap's, or the slot's own. */
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
			fail("VCAM_IOC_EXPORT");
		return export.fd;
	}
	if (heap < 0)
		fail("open /dev/dma_heap/system");
	if (xioctl(heap, DMA_HEAP_IOCTL_ALLOC, &alloc) < 0)
		fail("DMA_HEAP_IOCTL_ALLOC");
	close(heap);
	return alloc.fd;
}

/* A camera on a new control file; its slots' lengths in LENGTHS. */
static int make_camera(unsigned int width, unsigned int height,
		       unsigned int slots, unsigned int *nr, unsigned int *lengths)
{
	struct vcam_frame frames[MAX_SLOTS];
	struct vcam_ioc_create create = {
		.device_name = (uintptr_t)"fault target",
		.width = width,
		.height = height,
		.pixelformat = V4L2_PIX_FMT_YUYV,
		.nr_frames = slots,
		.frames = (uintptr_t)frames,
	};
	unsigned int i;
	int ctrl = open("/dev/vcam", O_RDWR | O_CLOEXEC);

	if (ctrl < 0)
		fail("open /dev/vcam");
	if (xioctl(ctrl, VCAM_IOC_CREATE, &create) < 0)
		fail("VCAM_IOC_CREATE");
	for (i = 0; i < slots; i++)
		lengths[i] = frames[i].length;
	*nr = create.device_nr;
	return ctrl;
}

static void queue_slot(int ctrl, int fd, unsigned int index)
{
	struct vcam_ioc_queue q = { .fd = fd, .index = index };

	if (xioctl(ctrl, VCAM_IOC_QUEUE, &q) < 0)
		fail("VCAM_IOC_QUEUE");
}

static int producer(unsigned int width, unsigned int height,
		    unsigned int slots, unsigned int usec)
{
	unsigned int lengths[MAX_SLOTS], nr, i;
	int dmabuf[MAX_SLOTS], ctrl;

	if (slots < 2 || slots > MAX_SLOTS)
		return 2;
	ctrl = make_camera(width, height, slots, &nr, lengths);
	for (i = 0; i < slots; i++)
		dmabuf[i] = slot_dmabuf(ctrl, i, lengths[i]);
	printf("ready %u %d", nr, (int)getpid());
	for (i = 0; i < slots; i++)
		printf(" %d", dmabuf[i]);
	say("");
	for (i = 0; i < slots; i++)
		queue_slot(ctrl, dmabuf[i], i);
	for (;;) {
		struct vcam_ioc_dequeue dq = { 0 };

		if (xioctl(ctrl, VCAM_IOC_DEQUEUE, &dq) < 0)
			fail("VCAM_IOC_DEQUEUE");
		if (usec)
			usleep(usec);
		queue_slot(ctrl, dmabuf[dq.index], dq.index);
	}
}

/* Descriptor FD of process PID, as a descriptor of this one. */
static int steal_fd(int pidfd, int fd)
{
	int mine = syscall(SYS_pidfd_getfd, pidfd, fd, 0);

	if (mine < 0)
		fail("pidfd_getfd");
	return mine;
}

static int consumer(const char *path, int dmabuf_mem, const char *stage,
		    int argc, char **argv)
{
	struct v4l2_requestbuffers req = {
		.type = cap_type,
		.memory = dmabuf_mem ? V4L2_MEMORY_DMABUF : V4L2_MEMORY_MMAP,
	};
	int imports[MAX_SLOTS], video, i, streaming = 0;
	int do_poll = !strcmp(stage, "poll"), pidfd = -1;
	size_t import_len[MAX_SLOTS];

	if (dmabuf_mem) {
		if (argc < 3 || argc - 1 > MAX_SLOTS)
			return 2;
		pidfd = syscall(SYS_pidfd_open, atoi(argv[0]), 0);
		if (pidfd < 0)
			fail("pidfd_open");
		for (i = 0; i < argc - 1; i++) {
			imports[i] = steal_fd(pidfd, atoi(argv[i + 1]));
			import_len[i] = lseek(imports[i], 0, SEEK_END);
		}
		req.count = argc - 1;
	} else {
		req.count = 4;
	}
	video = open(path, O_RDWR | O_CLOEXEC);
	if (video < 0)
		fail("open");
	if (xioctl(video, VIDIOC_REQBUFS, &req) < 0)
		fail("VIDIOC_REQBUFS");
	for (i = 0; i < (int)req.count; i++) {
		struct v4l2_buffer buf = {
			.index = i, .type = cap_type, .memory = req.memory,
		};

		if (dmabuf_mem) {
			buf.m.fd = imports[i];
			buf.length = import_len[i];
		}
		if (xioctl(video, VIDIOC_QBUF, &buf) < 0)
			fail("VIDIOC_QBUF");
	}
	if (!strcmp(stage, "gap")) {
		say("queued");
		for (;;)
			pause();
	}
	if (xioctl(video, VIDIOC_STREAMON, (void *)&cap_type) < 0)
		fail("VIDIOC_STREAMON");
	for (;;) {
		struct v4l2_buffer buf = { .type = cap_type, .memory = req.memory };

		if (do_poll) {
			struct pollfd p = { .fd = video, .events = POLLIN };

			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				fail("poll");
			if (p.revents & POLLERR) {
				say("error poll POLLERR 0");
				exit(3);
			}
		}
		if (xioctl(video, VIDIOC_DQBUF, &buf) < 0)
			fail("VIDIOC_DQBUF");
		if (!strcmp(stage, "hold")) {
			void *map;

			if (dmabuf_mem) {
				map = mmap(NULL, import_len[buf.index], PROT_READ,
					   MAP_SHARED, imports[buf.index], 0);
			} else {
				struct v4l2_buffer q = { .index = buf.index, .type = cap_type,
							 .memory = req.memory };

				if (xioctl(video, VIDIOC_QUERYBUF, &q) < 0)
					fail("VIDIOC_QUERYBUF");
				map = mmap(NULL, q.length, PROT_READ, MAP_SHARED,
					   video, q.m.offset);
			}
			if (map == MAP_FAILED)
				fail("mmap");
			printf("holding %u %u\n", buf.index, *(volatile unsigned char *)map);
			fflush(stdout);
			for (;;)
				pause();
		}
		if (!streaming) {
			say("streaming");
			streaming = 1;
		}
		if (dmabuf_mem) {
			buf.m.fd = imports[buf.index];
			buf.length = import_len[buf.index];
		}
		if (xioctl(video, VIDIOC_QBUF, &buf) < 0)
			fail("VIDIOC_QBUF");
	}
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One camera made, one frame through it, the camera destroyed. */
static void one_cycle(unsigned int n, unsigned int width, unsigned int height)
{
	unsigned int lengths[2], nr, i;
	int zero_copy = n & 1, ctrl_first = n & 2, pending = n % 3 == 0;
	int ctrl, video, dmabuf[2];
	char path[32];
	struct v4l2_requestbuffers req = {
		.count = 2, .type = cap_type,
		.memory = zero_copy ? V4L2_MEMORY_DMABUF : V4L2_MEMORY_MMAP,
	};
	struct v4l2_buffer buf = { .type = cap_type, .memory = req.memory };

	ctrl = make_camera(width, height, 2, &nr, lengths);
	for (i = 0; i < 2; i++)
		dmabuf[i] = slot_dmabuf(ctrl, i, lengths[i]);
	snprintf(path, sizeof(path), "/dev/video%u", nr);
	video = open(path, O_RDWR | O_CLOEXEC);
	if (video < 0)
		fail("open");
	if (xioctl(video, VIDIOC_REQBUFS, &req) < 0 || req.count != 2)
		fail("VIDIOC_REQBUFS");
	for (i = 0; i < 2; i++) {
		struct v4l2_buffer q = { .index = i, .type = cap_type, .memory = req.memory };

		if (zero_copy) {
			q.m.fd = dmabuf[i];
			q.length = lengths[i];
		}
		if (xioctl(video, VIDIOC_QBUF, &q) < 0)
			fail("VIDIOC_QBUF");
	}
	if (xioctl(video, VIDIOC_STREAMON, (void *)&cap_type) < 0)
		fail("VIDIOC_STREAMON");
	queue_slot(ctrl, dmabuf[0], 0);
	if (xioctl(video, VIDIOC_DQBUF, &buf) < 0)
		fail("VIDIOC_DQBUF");
	if (buf.flags & V4L2_BUF_FLAG_ERROR || buf.bytesused != lengths[0]) {
		fprintf(stderr, "fault-target: cycle %u: frame flags %#x, %u bytes\n",
			n, buf.flags, buf.bytesused);
		exit(1);
	}
	if (pending)	/* a frame still queued when the camera goes */
		queue_slot(ctrl, dmabuf[1], 1);
	else if (xioctl(video, VIDIOC_STREAMOFF, (void *)&cap_type) < 0)
		fail("VIDIOC_STREAMOFF");
	if (ctrl_first) {
		close(ctrl);
		close(video);
	} else {
		close(video);
		close(ctrl);
	}
	close(dmabuf[0]);
	close(dmabuf[1]);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (!strcmp(mode, "producer") && argc == 6)
		return producer(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (!strcmp(mode, "consumer") && argc >= 5 &&
	    (!strcmp(argv[3], "mmap") || !strcmp(argv[3], "dmabuf")))
		return consumer(argv[2], !strcmp(argv[3], "dmabuf"), argv[4], argc - 5, argv + 5);
	if (!strcmp(mode, "cycles") && argc == 5) {
		unsigned int count = atoi(argv[2]), n;
		double t0 = now_seconds();

		for (n = 0; n < count; n++)
			one_cycle(n, atoi(argv[3]), atoi(argv[4]));
		printf("cycles %u %.3f\n", count, now_seconds() - t0);
		return 0;
	}
	fprintf(stderr, "usage: fault-target producer WIDTH HEIGHT SLOTS USEC\n"
			"       fault-target consumer /dev/videoN mmap|dmabuf stream|poll|gap|hold [PID FD...]\n"
			"       fault-target cycles COUNT WIDTH HEIGHT\n");
	return 2;
}
