// SPDX-License-Identifier: GPL-2.0+
/*
 * vcam-fuzz - random, structure-aware calls on /dev/vcam and its cameras
 *
 *   vcam-fuzz [--seed N] [--seconds S] [--threads T] [--ops N] [--trace]
 *
 * Several threads share a few tables of descriptors: control files of
 * /dev/vcam, capture files of the /dev/videoN they create, DMA-BUFs (the
 * driver's own EXPORT and EXPBUF fds, udmabuf, vgem dumb buffers) and
 * mappings. Each thread draws operations from one weighted table (ops[]
 * below); each operation is a small function that builds mostly valid
 * arguments from what the tables know (the camera's slot count and frame
 * size, the memory type of the last REQBUFS, a DMA-BUF exported from the
 * very slot it queues into) and corrupts a field now and then, so the
 * driver is driven into its deep states (streaming, zero-copy pairs, the
 * copy path, a camera closed under its consumer) rather than turned away
 * at the first EINVAL. A few operations are short valid sequences (set up
 * streaming, produce a frame, consume one) for the same reason.
 *
 * Reproducing: each thread has its own PRNG seeded from --seed and its
 * number, so a thread's choices are a function of the seed and of what its
 * calls returned. With --threads 1 and --ops N a run is repeatable up to
 * the frame path's timing; with more threads the interleaving is not. The
 * last calls of every thread are printed on a hang or a crash; --trace
 * prints every call as it returns.
 *
 * Blocking calls (DQBUF, DEQUEUE, WAIT on a blocking file) are interrupted
 * by a watchdog thread's signal after 100 ms; a thread still in one call
 * after --hang seconds is a hang: the last calls are printed with the
 * kernel stack of the stuck thread and the exit status is 2. A SIGSEGV or
 * SIGBUS (a mapping the driver accepted but cannot back) exits with 3.
 * At the end every descriptor is closed and every mapping unmapped; a
 * summary prints per call the number of calls, successes and errnos.
 * Exit status 0 means the run completed and cleaned up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <linux/videodev2.h>
#include <linux/vcam.h>

/* The few DRM definitions vgem needs (no libdrm headers on the lab hosts) */
struct fz_drm_mode_create_dumb {
	uint32_t height, width, bpp, flags, handle, pitch;
	uint64_t size;
};

struct fz_drm_prime_handle {
	uint32_t handle, flags;
	int32_t fd;
};

struct fz_drm_gem_close {
	uint32_t handle, pad;
};

#define FZ_DRM_IOCTL_MODE_CREATE_DUMB _IOWR('d', 0xb2, struct fz_drm_mode_create_dumb)
#define FZ_DRM_IOCTL_PRIME_HANDLE_TO_FD _IOWR('d', 0x2d, struct fz_drm_prime_handle)
#define FZ_DRM_IOCTL_GEM_CLOSE _IOW('d', 0x09, struct fz_drm_gem_close)

/* Sizes of the shared tables: small, so that threads meet on them */
#define NCTRL 4
#define NCAP 6
#define NDBUF 16
#define NMAP 48
#define MAX_THREADS 16
#define MAX_BUFS 8		/* capture buffers a REQBUFS asks for, at most */
#define USERPTR_ARENA (16 << 20)
#define TRACE_RING 32
#define INTERRUPT_MS 100	/* a call longer than this gets a signal */
#define NERRNO 134		/* errno buckets; 0 is success */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Every system call the fuzzer makes, for the summary and the trace */
#define CALLS(X)							\
	X(OPEN_VCAM) X(OPEN_VIDEO) X(CLOSE) X(CREATE) X(QUEUE) X(DEQUEUE) \
	X(STATUS) X(WAIT) X(EXPORT) X(VCAM_UNKNOWN) X(QUERYCAP) X(ENUM_FMT) \
	X(G_FMT) X(S_FMT) X(TRY_FMT) X(G_PARM) X(S_PARM) X(ENUM_INPUT)	\
	X(G_INPUT) X(S_INPUT) X(ENUM_FRAMESIZES) X(ENUM_FRAMEINTERVALS)	\
	X(REQBUFS) X(CREATE_BUFS) X(QUERYBUF) X(PREPARE_BUF) X(QBUF)	\
	X(DQBUF) X(EXPBUF) X(STREAMON) X(STREAMOFF) X(V4L2_OTHER)	\
	X(MMAP_VCAM) X(MMAP_VIDEO) X(MMAP_DMABUF) X(MUNMAP) X(READ) X(POLL) \
	X(TOUCH) X(UDMABUF) X(VGEM) X(DMABUF_SYNC)

#define CALL_ENUM(name) C_##name,
#define CALL_NAME(name) #name,
enum call { CALLS(CALL_ENUM) NCALLS };
static const char *const call_names[] = { CALLS(CALL_NAME) };

/* ---------------------------------------------------------------------- */
/* Shared state                                                             */

/*
 * Each table entry's rwlock guards the life of its descriptor: a call on
 * the fd holds it for reading, close (and the open that fills an empty
 * entry) for writing, so no thread ever calls on a number that has been
 * closed and reused. A second descriptor an operation needs (a DMA-BUF to
 * queue) is only tried for reading; when it is busy, -1 goes instead. The
 * other fields of the entries are guarded by state_lock, held only around
 * reading or writing them, never across a system call.
 */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;

/* A control file of /dev/vcam, and its camera once CREATE succeeded */
struct ctrl {
	pthread_rwlock_t lock;
	int fd;			/* -1: closed */
	unsigned int gen;	/* bumped at each close */
	bool created;
	unsigned int nr, slots, length, width, height, fourcc;
};

/* A capture file of a camera's /dev/videoN */
struct cap {
	pthread_rwlock_t lock;
	int fd;			/* -1: closed */
	int ctrl;		/* the control entry whose camera it opened */
	unsigned int gen;	/* that entry's generation then */
	unsigned int length, width, height, fourcc;
	unsigned int memory, count;	/* of the last REQBUFS/CREATE_BUFS */
};

/* A DMA-BUF and where it came from */
struct dbuf {
	pthread_rwlock_t lock;
	int fd;			/* -1: none */
	size_t size;
	int ctrl, slot;		/* a slot's own buffer: its camera, else -1 */
	unsigned int gen;
};

/* A mapping; busy while an operation touches it outside state_lock */
struct map {
	void *addr;
	size_t len;
	bool busy;
};

static struct ctrl ctrls[NCTRL];
static struct cap caps[NCAP];
static struct dbuf dbufs[NDBUF];
static struct map maps[NMAP];

static unsigned int formats[16];
static unsigned int nformats;
static int udmabuf_dev = -1, vgem_dev = -1;
/*
 * USERPTR memory, used for nothing else, and right after it a PROT_NONE
 * page: a pointer that faults. The kernel writes frames wherever a USERPTR
 * buffer points, so no USERPTR range may leave the arena: 6.1's vb2 pins
 * it with FOLL_FORCE, which pins PROT_NONE and read-only pages too, and
 * then writes the fuzzer's own stacks, TLS and libc (it crashed the fuzzer
 * on 6.1 alone). A range that would leave it gets KERNEL_ADDRESS instead.
 */
static char *arena;
static void *guard;
#define KERNEL_ADDRESS (1ULL << 63)	/* access_ok() refuses it everywhere */
static long page_size;
static uint64_t seed;
static atomic_bool stopping;
static bool trace;
/*
 * --avoid qbuf-errors: capture buffers are only ever queued with valid
 * memory (a DMA-BUF that is large enough, a full-size USERPTR), which
 * keeps away a known driver bug (see fuzz/README.md) while it is open.
 */
static bool avoid_qbuf_errors;

/* What one call did, for the trace ring */
struct rec {
	enum call call;
	int fd, err;
	unsigned long arg;
};

/* One fuzzing thread */
struct thread {
	pthread_t handle;
	pid_t tid;
	int nr;
	uint64_t rng;
	unsigned long ops;
	_Atomic int64_t since;	/* start of the current call in ns, 0: none */
	_Atomic int current;	/* the current call */
	struct rec ring[TRACE_RING];
	unsigned long nrec;
	unsigned long stats[NCALLS][NERRNO + 1];
};

static struct thread threads[MAX_THREADS];
static int nthreads = 4;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---------------------------------------------------------------------- */
/* Randomness                                                               */

/* splitmix64: small, fast, and good enough to drive choices */
static uint64_t rnd64(struct thread *t)
{
	uint64_t z = (t->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A number in [0, n) */
static unsigned int rnd(struct thread *t, unsigned int n)
{
	return n ? rnd64(t) % n : 0;
}

/* True one time in n */
static bool one_in(struct thread *t, unsigned int n)
{
	return rnd(t, n) == 0;
}

/* Values at the edges, where validation goes wrong */
static uint32_t interesting32(struct thread *t)
{
	static const uint32_t v[] = {
		0, 1, 2, 3, 4, 7, 8, 31, 32, 33, 64, 255, 4095, 4096, 4097,
		8191, 8192, 8193, 65535, 65536, 0x7fffffff, 0x80000000,
		0xfffffffe, 0xffffffff,
	};

	return one_in(t, 4) ? (uint32_t)rnd64(t) : v[rnd(t, ARRAY_SIZE(v))];
}

/* GOOD most of the time, else an edge or a random value */
static uint32_t fuzz32(struct thread *t, uint32_t good)
{
	return one_in(t, 12) ? interesting32(t) : good;
}

/* Now and then, one 32-bit word of a structure replaced by an edge value */
static void corrupt(struct thread *t, void *p, size_t size)
{
	if (size >= 4 && one_in(t, 16))
		((uint32_t *)p)[rnd(t, size / 4)] = interesting32(t);
}

/*
 * A pointer field after corrupt(): the one meant, or else the guard page.
 * Half of a pointer replaced points anywhere in this process, and the
 * kernel writes there (CREATE's frames, a USERPTR buffer).
 */
static uint64_t tame(uint64_t p, uint64_t meant)
{
	return p == meant ? p : (uintptr_t)guard;
}

static uint64_t page_align(uint64_t n)
{
	return (n + page_size - 1) & ~(uint64_t)(page_size - 1);
}

/* ---------------------------------------------------------------------- */
/* Calls, counted and traced                                                */

static void record(struct thread *t, enum call c, int fd, unsigned long arg,
		   int err)
{
	struct rec *r = &t->ring[t->nrec++ % TRACE_RING];

	r->call = c;
	r->fd = fd;
	r->arg = arg;
	r->err = err;
	t->stats[c][err > 0 && err < NERRNO ? err : err ? NERRNO : 0]++;
	if (trace)
		fprintf(stderr, "t%d %s fd %d arg %#lx: %s\n", t->nr,
			call_names[c], fd, arg, err ? strerror(err) : "ok");
}

static void enter(struct thread *t, enum call c)
{
	atomic_store(&t->current, c);
	atomic_store(&t->since, now_ns());
}

static int leave(struct thread *t, enum call c, int fd, unsigned long arg,
		 long ret)
{
	int err = ret < 0 ? errno : 0;

	atomic_store(&t->since, 0);
	record(t, c, fd, arg, err);
	return err ? -err : (int)ret;
}

/* ioctl(); returns its result or -errno */
static int xioctl(struct thread *t, enum call c, int fd, unsigned long req,
		  void *arg)
{
	enter(t, c);
	return leave(t, c, fd, req, ioctl(fd, req, arg));
}

static int xclose(struct thread *t, int fd)
{
	enter(t, C_CLOSE);
	return leave(t, C_CLOSE, fd, 0, close(fd));
}

static int xopen(struct thread *t, enum call c, const char *path, int flags)
{
	enter(t, c);
	return leave(t, c, -1, flags, open(path, flags));
}

/* mmap(); the address, or NULL with errno kept in the stats */
static void *xmmap(struct thread *t, enum call c, int fd, size_t len,
		   int prot, int flags, off_t off)
{
	void *p;

	enter(t, c);
	p = mmap(NULL, len, prot, flags, fd, off);
	leave(t, c, fd, off, p == MAP_FAILED ? -1 : 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---------------------------------------------------------------------- */
/* The tables                                                               */

/* An entry index to try: a random one, preferring entries in use */
#define PICK(t, table, cond) ({						\
	int _i = -1;							\
	for (int _try = 0; _try < 4; _try++) {				\
		int _j = rnd(t, ARRAY_SIZE(table));			\
		if (cond(&(table)[_j])) {				\
			_i = _j;					\
			break;						\
		}							\
	}								\
	_i; })

static bool ctrl_open(struct ctrl *c) { return c->fd >= 0; }
static bool ctrl_created(struct ctrl *c) { return c->fd >= 0 && c->created; }
static bool cap_open(struct cap *c) { return c->fd >= 0; }
static bool dbuf_used(struct dbuf *d) { return d->fd >= 0; }

/* Read-lock an entry's descriptor; -1 if it turned out closed */
static int hold(pthread_rwlock_t *lock, int *fdp)
{
	pthread_rwlock_rdlock(lock);
	if (*fdp < 0) {
		pthread_rwlock_unlock(lock);
		return -1;
	}
	return *fdp;
}

/* Try to read-lock a second descriptor; -1 (the fd to use) when busy */
static int try_hold(pthread_rwlock_t *lock, int *fdp)
{
	if (pthread_rwlock_tryrdlock(lock))
		return -1;
	if (*fdp < 0) {
		pthread_rwlock_unlock(lock);
		return -1;
	}
	return *fdp;
}

/* Keep a new DMA-BUF fd in the table, or close it when the table is full */
static void keep_dbuf(struct thread *t, int fd, size_t size, int ctrl,
		      unsigned int gen, int slot)
{
	for (int try = 0; try < NDBUF; try++) {
		struct dbuf *d = &dbufs[rnd(t, NDBUF)];

		if (pthread_rwlock_trywrlock(&d->lock))
			continue;
		if (d->fd < 0) {
			pthread_mutex_lock(&state_lock);
			d->fd = fd;
			d->size = size;
			d->ctrl = ctrl;
			d->gen = gen;
			d->slot = slot;
			pthread_mutex_unlock(&state_lock);
			pthread_rwlock_unlock(&d->lock);
			return;
		}
		pthread_rwlock_unlock(&d->lock);
	}
	xclose(t, fd);
}

/* Keep a mapping, or unmap it when the table is full */
static void keep_map(struct thread *t, void *addr, size_t len)
{
	pthread_mutex_lock(&state_lock);
	for (int i = 0; i < NMAP; i++) {
		if (!maps[i].addr) {
			maps[i].addr = addr;
			maps[i].len = len;
			maps[i].busy = false;
			pthread_mutex_unlock(&state_lock);
			return;
		}
	}
	pthread_mutex_unlock(&state_lock);
	enter(t, C_MUNMAP);
	leave(t, C_MUNMAP, -1, len, munmap(addr, len));
}

/* A snapshot of a camera's format, from its control entry */
struct camfmt {
	unsigned int nr, slots, length, width, height, fourcc, gen;
	bool created;
};

static struct camfmt ctrl_fmt(int i)
{
	struct camfmt f;

	pthread_mutex_lock(&state_lock);
	f = (struct camfmt){ ctrls[i].nr, ctrls[i].slots, ctrls[i].length,
			     ctrls[i].width, ctrls[i].height, ctrls[i].fourcc,
			     ctrls[i].gen, ctrls[i].created };
	pthread_mutex_unlock(&state_lock);
	return f;
}

static struct cap cap_state(int i)
{
	struct cap c;

	pthread_mutex_lock(&state_lock);
	c = caps[i];
	pthread_mutex_unlock(&state_lock);
	return c;
}

/*
 * A DMA-BUF for a camera's buffer INDEX, held for reading (unhold with
 * *lockp): preferably the slot's own buffer of that camera (so queueing it
 * on both sides makes a zero-copy pair), else any one at least SIZE bytes,
 * else any. -1 when none could be held.
 */
static int pick_dbuf(struct thread *t, int ctrl, unsigned int gen,
		     unsigned int index, size_t size, pthread_rwlock_t **lockp,
		     size_t *sizep)
{
	int best = -1, fit = -1, other = -1;
	bool valid_only = avoid_qbuf_errors && size;

	pthread_mutex_lock(&state_lock);
	for (int k = 0, i = rnd(t, NDBUF); k < NDBUF; k++, i = (i + 1) % NDBUF) {
		struct dbuf *d = &dbufs[i];

		if (d->fd < 0)
			continue;
		if (d->ctrl == ctrl && d->gen == gen && d->slot == (int)index &&
		    d->size >= size)
			best = i;
		else if (d->size >= size && fit < 0)
			fit = i;
		else if (other < 0 && !valid_only)
			other = i;
	}
	pthread_mutex_unlock(&state_lock);
	if (best < 0 || one_in(t, 4))
		best = fit >= 0 && (valid_only || !one_in(t, 8)) ? fit : other;
	if (best < 0)
		return -1;
	*lockp = &dbufs[best].lock;
	*sizep = dbufs[best].size;
	return try_hold(&dbufs[best].lock, &dbufs[best].fd);
}

static void unhold(pthread_rwlock_t *lock, int fd)
{
	if (fd >= 0)
		pthread_rwlock_unlock(lock);
}

/* ---------------------------------------------------------------------- */
/* Operations on the control node                                           */

/*
 * The frame path's counters of every camera closed: proof that the run
 * got as far as delivering frames, zero-copy and copied.
 */
static const char *const counters[] = { "frames_queued", "frames_zero_copy",
					"frames_copied", "frames_errored" };
static _Atomic unsigned long frames[ARRAY_SIZE(counters)];

static void count_frames(struct ctrl *c)
{
	char path[96];
	unsigned long n;
	FILE *f;

	if (!c->created)
		return;
	for (size_t k = 0; k < ARRAY_SIZE(counters); k++) {
		snprintf(path, sizeof(path),
			 "/sys/class/video4linux/video%u/vcam/%s", c->nr,
			 counters[k]);
		f = fopen(path, "r");
		if (f && fscanf(f, "%lu", &n) == 1)
			frames[k] += n;
		if (f)
			fclose(f);
	}
}

/* Close a control entry's file (held for writing): its camera goes */
static void close_ctrl(struct thread *t, struct ctrl *c)
{
	count_frames(c);
	if (t)
		xclose(t, c->fd);
	else
		close(c->fd);
	pthread_mutex_lock(&state_lock);
	c->fd = -1;
	c->created = false;
	c->gen++;
	pthread_mutex_unlock(&state_lock);
}

static void op_vcam_open(struct thread *t)
{
	struct ctrl *c = &ctrls[rnd(t, NCTRL)];
	int fd;

	/* mostly fill an empty entry: cameras should live a while */
	if (c->fd >= 0 && !one_in(t, 8))
		return;
	pthread_rwlock_wrlock(&c->lock);
	if (c->fd >= 0)		/* reopen: close first */
		close_ctrl(t, c);
	fd = xopen(t, C_OPEN_VCAM, "/dev/vcam",
		   O_RDWR | O_CLOEXEC | (one_in(t, 2) ? O_NONBLOCK : 0));
	pthread_mutex_lock(&state_lock);
	c->fd = fd < 0 ? -1 : fd;
	pthread_mutex_unlock(&state_lock);
	pthread_rwlock_unlock(&c->lock);
}

static void op_vcam_close(struct thread *t)
{
	struct ctrl *c = &ctrls[rnd(t, NCTRL)];

	pthread_rwlock_wrlock(&c->lock);
	if (c->fd >= 0)
		close_ctrl(t, c);
	pthread_rwlock_unlock(&c->lock);
}

static const char *const labels[] = {
	"Fuzz Cam", "a", "Z9", "cam 0", " leading space", "trailing ",
	"bad-char", "", "exactly thirty one characters x",
	"thirty two characters long label",
};

static void op_create(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_open);
	struct vcam_frame frames[VCAM_MAX_FRAMES];
	char label[64];
	struct vcam_ioc_create req = { 0 };
	unsigned int fourcc = formats[rnd(t, nformats)];
	uint64_t meant_frames, meant_name;
	int fd, ret;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	snprintf(label, sizeof(label), "%s", one_in(t, 4) ?
		 labels[rnd(t, ARRAY_SIZE(labels))] : "Fuzz Cam");
	req.device_name = (uintptr_t)(one_in(t, 30) ? guard : label);
	/* small cameras; now and then one too large for any limit */
	req.width = fuzz32(t, one_in(t, 8) ? 0 : 2 * (1 + rnd(t, 80)));
	req.height = fuzz32(t, one_in(t, 8) ? 0 : 2 * (1 + rnd(t, 60)));
	req.pixelformat = fuzz32(t, fourcc);
	req.colorspace = fuzz32(t, one_in(t, 4) ? V4L2_COLORSPACE_REC709 : 0);
	req.nr_frames = fuzz32(t, 2 + rnd(t, 5));
	req.frames = (uintptr_t)(one_in(t, 30) ? guard : frames);
	if (one_in(t, 40)) {	/* over max_camera_mb: must fail cleanly */
		req.width = req.height = 8192;
		req.nr_frames = 32;
	}
	meant_frames = req.frames;
	meant_name = req.device_name;
	corrupt(t, &req, sizeof(req));
	req.frames = tame(req.frames, meant_frames);
	req.device_name = tame(req.device_name, meant_name);
	/*
	 * A camera that could be created is a small one: a large size within
	 * range becomes one over max_camera_mb, which must fail cleanly (a
	 * few big cameras with buffers would take the guest's memory).
	 */
	if (req.width <= VCAM_MAX_WIDTH && req.height <= VCAM_MAX_HEIGHT &&
	    req.width * (uint64_t)req.height > 1280 * 960) {
		req.width = req.height = 8192;
		req.nr_frames = 32;
	}
	ret = xioctl(t, C_CREATE, fd, VCAM_IOC_CREATE, &req);
	if (ret == 0) {
		pthread_mutex_lock(&state_lock);
		ctrls[i].created = true;
		ctrls[i].nr = req.device_nr;
		ctrls[i].slots = req.nr_frames;
		ctrls[i].length = frames[0].length;
		ctrls[i].width = req.width ? req.width : 640;
		ctrls[i].height = req.height ? req.height : 480;
		ctrls[i].fourcc = req.pixelformat;
		pthread_mutex_unlock(&state_lock);
	}
	pthread_rwlock_unlock(&ctrls[i].lock);
}

/* QUEUE a frame: the slot's own buffer, or a DMA-BUF of the table */
static void queue_frame(struct thread *t, int fd, int i, struct camfmt *f)
{
	struct vcam_ioc_queue q = { 0 };
	pthread_rwlock_t *lock = NULL;
	size_t size;
	int dfd = -1;

	q.index = fuzz32(t, rnd(t, f->slots ? f->slots : 1));
	if (one_in(t, 3)) {
		q.fd = VCAM_QUEUE_FD_DRIVER;
	} else {
		dfd = pick_dbuf(t, i, f->gen, q.index, f->length, &lock, &size);
		q.fd = dfd >= 0 ? (uint32_t)dfd : one_in(t, 2) ?
		       (uint32_t)fd : VCAM_QUEUE_FD_DRIVER;
	}
	switch (rnd(t, 8)) {
	case 0: q.length = f->length / 2; break;	/* short: error flag */
	case 1: q.length = f->length + 1; break;
	case 2: q.length = f->length; break;
	default: q.length = 0;
	}
	q.timestamp = one_in(t, 2) ? 0 : one_in(t, 8) ? rnd64(t) : (uint64_t)now_ns();
	corrupt(t, &q, sizeof(q));
	xioctl(t, C_QUEUE, fd, VCAM_IOC_QUEUE, &q);
	unhold(lock, dfd);
}

static void op_queue(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_open);
	struct camfmt f;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	f = ctrl_fmt(i);
	queue_frame(t, fd, i, &f);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

static void op_dequeue(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_created);
	struct vcam_ioc_dequeue d;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	xioctl(t, C_DEQUEUE, fd, VCAM_IOC_DEQUEUE, one_in(t, 30) ? guard : &d);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

static void op_status(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_open);
	uint64_t status;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	xioctl(t, C_STATUS, fd, VCAM_IOC_STATUS, one_in(t, 30) ? guard : &status);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

static void op_wait(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_created);
	struct vcam_ioc_wait w = { 0 };
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	w.mask = one_in(t, 10) ? rnd64(t) : 1 + rnd(t, VCAM_STATUS_MASK);
	xioctl(t, C_WAIT, fd, VCAM_IOC_WAIT, &w);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

static void op_export(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_created);
	struct vcam_ioc_export e = { 0 };
	struct camfmt f;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	f = ctrl_fmt(i);
	e.index = fuzz32(t, rnd(t, f.slots ? f.slots : 1));
	e.flags = one_in(t, 2) ? O_CLOEXEC : 0;
	corrupt(t, &e, sizeof(e));
	if (xioctl(t, C_EXPORT, fd, VCAM_IOC_EXPORT, &e) == 0)
		keep_dbuf(t, e.fd, page_align(f.length), i, f.gen, e.index);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

/* Commands vcam does not know: other numbers, sizes and directions of 'v' */
static void op_vcam_unknown(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_open);
	static const unsigned int dirs[] = { _IOC_NONE, _IOC_READ, _IOC_WRITE,
					     _IOC_READ | _IOC_WRITE };
	uint64_t buf[64] = { 0 };
	unsigned long cmd;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	if (one_in(t, 4))	/* a capture node's ioctl on the control node */
		cmd = VIDIOC_QUERYCAP;
	else
		cmd = _IOC(dirs[rnd(t, 4)], 'v', one_in(t, 2) ? rnd(t, 8) :
			   rnd(t, 256), rnd(t, sizeof(buf) + 1));
	xioctl(t, C_VCAM_UNKNOWN, fd, cmd, buf);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

static void op_vcam_mmap(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_open);
	struct camfmt f;
	size_t len;
	off_t off;
	void *p;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	f = ctrl_fmt(i);
	len = page_align(f.length ? f.length : 4096);
	off = (off_t)rnd(t, f.slots + 1) * len;
	if (one_in(t, 8))
		len += page_size * (1 + rnd(t, 2));
	if (one_in(t, 8))
		off += page_size;
	p = xmmap(t, C_MMAP_VCAM, fd, len, PROT_READ | PROT_WRITE,
		  one_in(t, 16) ? MAP_PRIVATE : MAP_SHARED, off);
	if (p)
		keep_map(t, p, len);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

/* ---------------------------------------------------------------------- */
/* Operations on the capture nodes                                          */

static void op_video_open(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_created);
	struct cap *c = &caps[rnd(t, NCAP)];
	struct camfmt f;
	char path[32];
	int fd;

	if (i < 0)
		return;
	f = ctrl_fmt(i);
	if (!f.created)
		return;
	snprintf(path, sizeof(path), "/dev/video%u", f.nr);
	if (c->fd >= 0 && !one_in(t, 4))
		return;
	pthread_rwlock_wrlock(&c->lock);
	if (c->fd >= 0) {
		xclose(t, c->fd);
		c->fd = -1;
	}
	fd = xopen(t, C_OPEN_VIDEO, path,
		   O_RDWR | O_CLOEXEC | (one_in(t, 2) ? O_NONBLOCK : 0));
	pthread_mutex_lock(&state_lock);
	c->fd = fd < 0 ? -1 : fd;
	c->ctrl = i;
	c->gen = f.gen;
	c->length = f.length;
	c->width = f.width;
	c->height = f.height;
	c->fourcc = f.fourcc;
	c->memory = V4L2_MEMORY_MMAP;
	c->count = 0;
	pthread_mutex_unlock(&state_lock);
	pthread_rwlock_unlock(&c->lock);
}

static void op_video_close(struct thread *t)
{
	struct cap *c = &caps[rnd(t, NCAP)];

	pthread_rwlock_wrlock(&c->lock);
	if (c->fd >= 0) {
		xclose(t, c->fd);
		pthread_mutex_lock(&state_lock);
		c->fd = -1;
		pthread_mutex_unlock(&state_lock);
	}
	pthread_rwlock_unlock(&c->lock);
}

/* Hold a random open capture entry; its index, or -1 */
static int hold_cap(struct thread *t, int *fdp, struct cap *state)
{
	int i = PICK(t, caps, cap_open);

	if (i < 0 || (*fdp = hold(&caps[i].lock, &caps[i].fd)) < 0)
		return -1;
	*state = cap_state(i);
	return i;
}

static uint32_t cap_type(struct thread *t)
{
	return fuzz32(t, V4L2_BUF_TYPE_VIDEO_CAPTURE);
}

static void op_info(struct thread *t)
{
	union {
		struct v4l2_capability cap;
		struct v4l2_fmtdesc fmt;
		struct v4l2_input in;
		struct v4l2_frmsizeenum size;
		struct v4l2_frmivalenum ival;
		int index;
	} u;
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	memset(&u, 0, sizeof(u));
	switch (rnd(t, 7)) {
	case 0:
		xioctl(t, C_QUERYCAP, fd, VIDIOC_QUERYCAP, &u.cap);
		break;
	case 1:
		u.fmt.index = fuzz32(t, rnd(t, 2));
		u.fmt.type = cap_type(t);
		xioctl(t, C_ENUM_FMT, fd, VIDIOC_ENUM_FMT, &u.fmt);
		break;
	case 2:
		u.in.index = fuzz32(t, 0);
		xioctl(t, C_ENUM_INPUT, fd, VIDIOC_ENUMINPUT, &u.in);
		break;
	case 3:
		xioctl(t, C_G_INPUT, fd, VIDIOC_G_INPUT, &u.index);
		break;
	case 4:
		u.index = fuzz32(t, 0);
		xioctl(t, C_S_INPUT, fd, VIDIOC_S_INPUT, &u.index);
		break;
	case 5:
		u.size.index = fuzz32(t, rnd(t, 2));
		u.size.pixel_format = fuzz32(t, s.fourcc);
		xioctl(t, C_ENUM_FRAMESIZES, fd, VIDIOC_ENUM_FRAMESIZES, &u.size);
		break;
	case 6:
		u.ival.index = fuzz32(t, rnd(t, 2));
		u.ival.pixel_format = fuzz32(t, s.fourcc);
		u.ival.width = fuzz32(t, s.width);
		u.ival.height = fuzz32(t, s.height);
		xioctl(t, C_ENUM_FRAMEINTERVALS, fd, VIDIOC_ENUM_FRAMEINTERVALS,
		       &u.ival);
		break;
	}
	pthread_rwlock_unlock(&caps[i].lock);
}

static void op_fmt(struct thread *t)
{
	static const unsigned long reqs[] = { VIDIOC_G_FMT, VIDIOC_S_FMT,
					      VIDIOC_TRY_FMT };
	static const enum call calls[] = { C_G_FMT, C_S_FMT, C_TRY_FMT };
	struct v4l2_format f = { 0 };
	struct cap s;
	int k = rnd(t, 3), fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	f.type = cap_type(t);
	f.fmt.pix.width = fuzz32(t, one_in(t, 4) ? s.width * 2 : s.width);
	f.fmt.pix.height = fuzz32(t, s.height);
	f.fmt.pix.pixelformat = one_in(t, 4) ? formats[rnd(t, nformats)] :
				fuzz32(t, s.fourcc);
	f.fmt.pix.field = fuzz32(t, V4L2_FIELD_NONE);
	f.fmt.pix.sizeimage = fuzz32(t, s.length);
	corrupt(t, &f, sizeof(f));
	xioctl(t, calls[k], fd, reqs[k], &f);
	pthread_rwlock_unlock(&caps[i].lock);
}

static void op_parm(struct thread *t)
{
	struct v4l2_streamparm p = { 0 };
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);
	bool set = one_in(t, 2);

	if (i < 0)
		return;
	p.type = cap_type(t);
	p.parm.capture.timeperframe.numerator = fuzz32(t, 1);
	p.parm.capture.timeperframe.denominator = fuzz32(t, 1 + rnd(t, 120));
	corrupt(t, &p, sizeof(p));
	xioctl(t, set ? C_S_PARM : C_G_PARM, fd,
	       set ? VIDIOC_S_PARM : VIDIOC_G_PARM, &p);
	pthread_rwlock_unlock(&caps[i].lock);
}

static uint32_t pick_memory(struct thread *t)
{
	static const uint32_t m[] = { V4L2_MEMORY_MMAP, V4L2_MEMORY_USERPTR,
				      V4L2_MEMORY_DMABUF };

	return fuzz32(t, m[rnd(t, 3)]);
}

static void note_bufs(int i, uint32_t memory, uint32_t count, bool add)
{
	pthread_mutex_lock(&state_lock);
	caps[i].memory = memory;
	caps[i].count = add ? caps[i].count + count : count;
	pthread_mutex_unlock(&state_lock);
}

static int reqbufs(struct thread *t, int i, int fd, uint32_t memory,
		   uint32_t count)
{
	struct v4l2_requestbuffers r = { 0 };
	int ret;

	r.count = count;
	r.type = cap_type(t);
	r.memory = memory;
	corrupt(t, &r, sizeof(r));
	ret = xioctl(t, C_REQBUFS, fd, VIDIOC_REQBUFS, &r);
	if (ret == 0)
		note_bufs(i, r.memory, r.count, false);
	return ret;
}

static void op_reqbufs(struct thread *t)
{
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	reqbufs(t, i, fd, pick_memory(t),
		fuzz32(t, one_in(t, 4) ? 0 : 1 + rnd(t, MAX_BUFS)));
	pthread_rwlock_unlock(&caps[i].lock);
}

static void op_create_bufs(struct thread *t)
{
	struct v4l2_create_buffers cb = { 0 };
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	cb.count = fuzz32(t, 1 + rnd(t, 3));
	cb.memory = one_in(t, 2) ? s.memory : pick_memory(t);
	cb.format.type = cap_type(t);
	cb.format.fmt.pix.width = fuzz32(t, s.width);
	cb.format.fmt.pix.height = fuzz32(t, s.height);
	cb.format.fmt.pix.pixelformat = fuzz32(t, s.fourcc);
	cb.format.fmt.pix.sizeimage = one_in(t, 4) ? s.length / 2 :
				      fuzz32(t, s.length);
	corrupt(t, &cb, sizeof(cb));
	/* large buffers only where the camera's memory limit refuses them */
	if (cb.format.fmt.pix.sizeimage > (16 << 20))
		cb.format.fmt.pix.sizeimage = 0x7fffffff;
	if (avoid_qbuf_errors)	/* the size the DMA-BUFs are made for */
		cb.format.fmt.pix.sizeimage = s.length;
	if (xioctl(t, C_CREATE_BUFS, fd, VIDIOC_CREATE_BUFS, &cb) == 0 &&
	    cb.count)
		note_bufs(i, cb.memory, cb.count, true);
	pthread_rwlock_unlock(&caps[i].lock);
}

/* QUERYBUF, then (mostly) map the buffer where QUERYBUF says */
static void op_querybuf_mmap(struct thread *t)
{
	struct v4l2_buffer b = { 0 };
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);
	size_t len;
	void *p;

	if (i < 0)
		return;
	b.index = fuzz32(t, rnd(t, s.count ? s.count : 1));
	b.type = cap_type(t);
	b.memory = fuzz32(t, s.memory);
	if (xioctl(t, C_QUERYBUF, fd, VIDIOC_QUERYBUF, &b) == 0 &&
	    !one_in(t, 4)) {
		len = fuzz32(t, b.length);
		if (len == 0 || len > (64 << 20))
			len = b.length + page_size;
		p = xmmap(t, C_MMAP_VIDEO, fd, len, PROT_READ | PROT_WRITE,
			  one_in(t, 16) ? MAP_PRIVATE : MAP_SHARED,
			  fuzz32(t, b.m.offset));
		if (p)
			keep_map(t, p, len);
	}
	pthread_rwlock_unlock(&caps[i].lock);
}

/*
 * Fill in a capture buffer for QBUF or PREPARE_BUF of MEMORY: for DMABUF
 * a DMA-BUF of the table is held (unhold with *lockp).
 */
static int fill_buffer(struct thread *t, struct cap *s, struct v4l2_buffer *b,
		       uint32_t index, uint32_t memory, pthread_rwlock_t **lockp)
{
	size_t size = 0;
	int dfd = -1;

	memset(b, 0, sizeof(*b));
	b->index = index;
	b->type = cap_type(t);
	b->memory = memory;
	b->field = V4L2_FIELD_NONE;
	if (avoid_qbuf_errors) {
		b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		if (memory == V4L2_MEMORY_USERPTR) {
			b->m.userptr = (uintptr_t)arena + rnd(t, 64) * page_size;
			b->length = page_align(s->length ? s->length : 1);
		} else if (memory == V4L2_MEMORY_DMABUF) {
			dfd = pick_dbuf(t, s->ctrl, s->gen, index,
					s->length ? s->length : 1, lockp, &size);
			b->m.fd = dfd;
			b->length = 0;
		}
		return dfd;
	}
	if (memory == V4L2_MEMORY_USERPTR) {
		size_t len = page_align(s->length ? s->length : 1);
		size_t max = USERPTR_ARENA - len - page_size;

		b->m.userptr = one_in(t, 30) ? KERNEL_ADDRESS :
			       (uintptr_t)arena + (rnd(t, max / page_size) *
						   page_size);
		if (one_in(t, 10))
			b->m.userptr += 1 + rnd(t, 64);
		b->length = one_in(t, 8) ? s->length / 2 : fuzz32(t, len);
	} else if (memory == V4L2_MEMORY_DMABUF) {
		dfd = pick_dbuf(t, s->ctrl, s->gen, index, s->length, lockp,
				&size);
		b->m.fd = dfd;
		b->length = one_in(t, 4) ? 0 : fuzz32(t, size);
	}
	corrupt(t, b, sizeof(*b));
	if (b->memory == V4L2_MEMORY_USERPTR &&
	    (b->m.userptr < (uintptr_t)arena ||
	     b->m.userptr + b->length > (uintptr_t)guard))
		b->m.userptr = KERNEL_ADDRESS;
	return dfd;
}

static void op_qbuf(struct thread *t)
{
	pthread_rwlock_t *lock = NULL;
	struct v4l2_buffer b;
	struct cap s;
	int fd, dfd, i = hold_cap(t, &fd, &s);
	bool prepare = one_in(t, 5);

	if (i < 0)
		return;
	dfd = fill_buffer(t, &s, &b, fuzz32(t, rnd(t, s.count ? s.count : 1)),
			  one_in(t, 6) ? pick_memory(t) : s.memory, &lock);
	if (!(avoid_qbuf_errors && b.memory == V4L2_MEMORY_DMABUF && dfd < 0))
		xioctl(t, prepare ? C_PREPARE_BUF : C_QBUF, fd,
		       prepare ? VIDIOC_PREPARE_BUF : VIDIOC_QBUF, &b);
	unhold(lock, dfd);
	pthread_rwlock_unlock(&caps[i].lock);
}

static void op_dqbuf(struct thread *t)
{
	struct v4l2_buffer b = { 0 };
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	b.type = cap_type(t);
	b.memory = fuzz32(t, s.memory);
	xioctl(t, C_DQBUF, fd, VIDIOC_DQBUF, &b);
	pthread_rwlock_unlock(&caps[i].lock);
}

static void op_expbuf(struct thread *t)
{
	struct v4l2_exportbuffer e = { 0 };
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	e.type = cap_type(t);
	e.index = fuzz32(t, rnd(t, s.count ? s.count : 1));
	e.flags = fuzz32(t, O_CLOEXEC | (one_in(t, 2) ? O_RDWR : O_RDONLY));
	corrupt(t, &e, sizeof(e));
	if (xioctl(t, C_EXPBUF, fd, VIDIOC_EXPBUF, &e) == 0)
		keep_dbuf(t, e.fd, page_align(s.length), -1, 0, -1);
	pthread_rwlock_unlock(&caps[i].lock);
}

static void op_stream(struct thread *t)
{
	struct cap s;
	int type, fd, i = hold_cap(t, &fd, &s);
	bool on = !one_in(t, 3);

	if (i < 0)
		return;
	type = cap_type(t);
	xioctl(t, on ? C_STREAMON : C_STREAMOFF, fd,
	       on ? VIDIOC_STREAMON : VIDIOC_STREAMOFF, &type);
	pthread_rwlock_unlock(&caps[i].lock);
}

/* V4L2 ioctls vcam leaves to the core, and numbers nobody knows */
static void op_v4l2_other(struct thread *t)
{
	static const unsigned long reqs[] = {
		VIDIOC_G_CTRL, VIDIOC_S_CTRL, VIDIOC_QUERYCTRL,
		VIDIOC_G_PRIORITY, VIDIOC_S_PRIORITY, VIDIOC_LOG_STATUS,
		VIDIOC_SUBSCRIBE_EVENT, VIDIOC_UNSUBSCRIBE_EVENT,
		VIDIOC_DQEVENT, VIDIOC_G_SELECTION, VIDIOC_ENUMSTD,
		VIDIOC_G_STD, VIDIOC_CROPCAP, VIDIOC_G_CROP, VIDIOC_ENUMAUDIO,
		VIDIOC_QUERY_EXT_CTRL, VCAM_IOC_STATUS,
		_IOWR('V', 104, struct v4l2_create_buffers), /* unknown */
		_IOWR('V', 200, int),
	};
	uint64_t buf[64];
	struct cap s;
	int fd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	/* small values: pointers inside the structures fault, never land */
	for (size_t k = 0; k < ARRAY_SIZE(buf); k++)
		buf[k] = one_in(t, 2) ? 0 : rnd(t, 4);
	xioctl(t, C_V4L2_OTHER, fd, reqs[rnd(t, ARRAY_SIZE(reqs))], buf);
	pthread_rwlock_unlock(&caps[i].lock);
}

/* ---------------------------------------------------------------------- */
/* Operations on any node: poll, read                                       */

static void op_poll(struct thread *t)
{
	static const short events[] = { POLLIN, POLLOUT, POLLPRI,
					POLLIN | POLLOUT | POLLPRI };
	struct pollfd pfd[3];
	pthread_rwlock_t *locks[3];
	int n = 0;

	for (int k = 0; k < 3; k++) {
		pthread_rwlock_t *lock;
		int fd;

		if (one_in(t, 2)) {
			struct ctrl *c = &ctrls[rnd(t, NCTRL)];

			lock = &c->lock;
			fd = try_hold(lock, &c->fd);
		} else {
			struct cap *c = &caps[rnd(t, NCAP)];

			lock = &c->lock;
			fd = try_hold(lock, &c->fd);
		}
		if (fd < 0)
			continue;
		locks[n] = lock;
		pfd[n].fd = fd;
		pfd[n].events = events[rnd(t, ARRAY_SIZE(events))];
		n++;
	}
	if (n) {
		enter(t, C_POLL);
		leave(t, C_POLL, pfd[0].fd, n, poll(pfd, n, rnd(t, 20)));
	}
	while (n--)
		pthread_rwlock_unlock(locks[n]);
}

static void op_read(struct thread *t)
{
	char buf[256];
	pthread_rwlock_t *lock;
	int fd;

	if (one_in(t, 2)) {
		struct ctrl *c = &ctrls[rnd(t, NCTRL)];

		lock = &c->lock;
		fd = hold(lock, &c->fd);
	} else {
		struct cap *c = &caps[rnd(t, NCAP)];

		lock = &c->lock;
		fd = hold(lock, &c->fd);
	}
	if (fd < 0)
		return;
	enter(t, C_READ);
	leave(t, C_READ, fd, 0, read(fd, buf, rnd(t, sizeof(buf) + 1)));
	pthread_rwlock_unlock(lock);
}

/* ---------------------------------------------------------------------- */
/* DMA-BUFs from elsewhere, and mappings                                     */

/* A size around a random camera's frame: right, short or long */
static size_t some_size(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_created);
	size_t len = i >= 0 ? ctrl_fmt(i).length : 0;

	if (!len)
		len = 1 + rnd(t, 64 << 10);
	switch (rnd(t, 6)) {
	case 0: len /= 2; break;
	case 1: len += page_size; break;
	}
	return page_align(len ? len : 1);
}

static void op_udmabuf(struct thread *t)
{
	struct udmabuf_create req = { 0 };
	size_t size = some_size(t);
	int memfd, fd;

	if (udmabuf_dev < 0)
		return;
	memfd = memfd_create("vcam-fuzz", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (memfd < 0)
		return;
	if (ftruncate(memfd, size) == 0 &&
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0) {
		req.memfd = memfd;
		req.flags = UDMABUF_FLAGS_CLOEXEC;
		req.size = size;
		fd = xioctl(t, C_UDMABUF, udmabuf_dev, UDMABUF_CREATE, &req);
		if (fd >= 0)
			keep_dbuf(t, fd, size, -1, 0, -1);
	}
	close(memfd);
}

static void op_vgem(struct thread *t)
{
	struct fz_drm_mode_create_dumb dumb = { 0 };
	struct fz_drm_prime_handle prime = { 0 };
	struct fz_drm_gem_close gc = { 0 };
	size_t size = some_size(t);

	if (vgem_dev < 0)
		return;
	dumb.width = page_size;
	dumb.height = size / page_size;
	dumb.bpp = 8;
	if (xioctl(t, C_VGEM, vgem_dev, FZ_DRM_IOCTL_MODE_CREATE_DUMB, &dumb))
		return;
	prime.handle = dumb.handle;
	prime.flags = O_CLOEXEC | O_RDWR;
	if (xioctl(t, C_VGEM, vgem_dev, FZ_DRM_IOCTL_PRIME_HANDLE_TO_FD,
		   &prime) == 0)
		keep_dbuf(t, prime.fd, dumb.size, -1, 0, -1);
	gc.handle = dumb.handle;	/* the DMA-BUF keeps the object */
	xioctl(t, C_VGEM, vgem_dev, FZ_DRM_IOCTL_GEM_CLOSE, &gc);
}

static void op_dbuf_close(struct thread *t)
{
	struct dbuf *d = &dbufs[rnd(t, NDBUF)];

	pthread_rwlock_wrlock(&d->lock);
	if (d->fd >= 0) {
		xclose(t, d->fd);
		pthread_mutex_lock(&state_lock);
		d->fd = -1;
		pthread_mutex_unlock(&state_lock);
	}
	pthread_rwlock_unlock(&d->lock);
}

static void op_dbuf_mmap(struct thread *t)
{
	int i = PICK(t, dbufs, dbuf_used);
	size_t len;
	void *p;
	int fd;

	if (i < 0 || (fd = hold(&dbufs[i].lock, &dbufs[i].fd)) < 0)
		return;
	len = dbufs[i].size;
	if (one_in(t, 8))
		len += page_size;
	p = xmmap(t, C_MMAP_DMABUF, fd, len, PROT_READ | PROT_WRITE,
		  MAP_SHARED, one_in(t, 8) ? page_size : 0);
	if (p)
		keep_map(t, p, len);
	pthread_rwlock_unlock(&dbufs[i].lock);
}

static void op_dbuf_sync(struct thread *t)
{
	static const uint64_t dirs[] = { DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE,
					 DMA_BUF_SYNC_RW };
	struct dma_buf_sync sync;
	int fd, i = PICK(t, dbufs, dbuf_used);

	if (i < 0 || (fd = hold(&dbufs[i].lock, &dbufs[i].fd)) < 0)
		return;
	sync.flags = dirs[rnd(t, 3)] |
		     (one_in(t, 2) ? DMA_BUF_SYNC_START : DMA_BUF_SYNC_END);
	corrupt(t, &sync, sizeof(sync));
	xioctl(t, C_DMABUF_SYNC, fd, DMA_BUF_IOCTL_SYNC, &sync);
	pthread_rwlock_unlock(&dbufs[i].lock);
}

/* Write to a mapping's first and last byte (a producer filling a frame) */
static void op_touch(struct thread *t)
{
	struct map m = { 0 };
	int i = rnd(t, NMAP);

	pthread_mutex_lock(&state_lock);
	if (maps[i].addr && !maps[i].busy) {
		maps[i].busy = true;
		m = maps[i];
	}
	pthread_mutex_unlock(&state_lock);
	if (!m.addr)
		return;
	enter(t, C_TOUCH);	/* a crash report names the mapping */
	((volatile char *)m.addr)[0] = (char)t->ops;
	((volatile char *)m.addr)[m.len - 1] = (char)t->ops;
	leave(t, C_TOUCH, -1, (unsigned long)m.addr, 0);
	pthread_mutex_lock(&state_lock);
	maps[i].busy = false;
	pthread_mutex_unlock(&state_lock);
}

static void op_munmap(struct thread *t)
{
	struct map m = { 0 };
	int i = rnd(t, NMAP);

	pthread_mutex_lock(&state_lock);
	if (maps[i].addr && !maps[i].busy) {
		m = maps[i];
		maps[i].addr = NULL;
	}
	pthread_mutex_unlock(&state_lock);
	if (!m.addr)
		return;
	enter(t, C_MUNMAP);
	leave(t, C_MUNMAP, -1, m.len, munmap(m.addr, m.len));
}

/* ---------------------------------------------------------------------- */
/* Short valid sequences, to reach streaming and the frame path             */

/* REQBUFS, every buffer queued, STREAMON: a consumer starting */
static void op_start_consumer(struct thread *t)
{
	pthread_rwlock_t *lock = NULL;
	struct v4l2_buffer b;
	struct cap s;
	int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	int fd, dfd, i = hold_cap(t, &fd, &s);
	uint32_t memory = pick_memory(t);

	if (i < 0)
		return;
	xioctl(t, C_STREAMOFF, fd, VIDIOC_STREAMOFF, &type);
	if (reqbufs(t, i, fd, memory, 1 + rnd(t, 4)) == 0) {
		s = cap_state(i);
		for (uint32_t k = 0; k < s.count; k++) {
			dfd = fill_buffer(t, &s, &b, k, s.memory, &lock);
			if (!(avoid_qbuf_errors && b.memory == V4L2_MEMORY_DMABUF &&
			      dfd < 0))
				xioctl(t, C_QBUF, fd, VIDIOC_QBUF, &b);
			unhold(lock, dfd);
		}
		xioctl(t, C_STREAMON, fd, VIDIOC_STREAMON, &type);
	}
	pthread_rwlock_unlock(&caps[i].lock);
}

/* QUEUE one frame, take back what is done: a producer's turn */
static void op_produce(struct thread *t)
{
	int i = PICK(t, ctrls, ctrl_created);
	struct vcam_ioc_dequeue d;
	struct camfmt f;
	int fd;

	if (i < 0 || (fd = hold(&ctrls[i].lock, &ctrls[i].fd)) < 0)
		return;
	f = ctrl_fmt(i);
	queue_frame(t, fd, i, &f);
	if (one_in(t, 2))
		xioctl(t, C_DEQUEUE, fd, VCAM_IOC_DEQUEUE, &d);
	pthread_rwlock_unlock(&ctrls[i].lock);
}

/* DQBUF and queue the same buffer again: a consumer's turn */
static void op_consume(struct thread *t)
{
	pthread_rwlock_t *lock = NULL;
	struct v4l2_buffer b = { 0 }, again;
	struct cap s;
	int fd, dfd, i = hold_cap(t, &fd, &s);

	if (i < 0)
		return;
	b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	b.memory = s.memory;
	if (xioctl(t, C_DQBUF, fd, VIDIOC_DQBUF, &b) == 0) {
		dfd = fill_buffer(t, &s, &again, b.index, b.memory, &lock);
		if (b.memory == V4L2_MEMORY_USERPTR &&
		    (avoid_qbuf_errors || !one_in(t, 4))) {
			again.m.userptr = b.m.userptr;
			again.length = b.length;
		}
		if (!(avoid_qbuf_errors && b.memory == V4L2_MEMORY_DMABUF &&
		      dfd < 0))
			xioctl(t, C_QBUF, fd, VIDIOC_QBUF, &again);
		unhold(lock, dfd);
	}
	pthread_rwlock_unlock(&caps[i].lock);
}

/* ---------------------------------------------------------------------- */
/* The table of operations                                                  */

struct op {
	const char *name;
	void (*fn)(struct thread *t);
	unsigned int weight;
};

static const struct op ops[] = {
	{ "vcam_open",		op_vcam_open,		2 },
	{ "vcam_close",		op_vcam_close,		1 },
	{ "create",		op_create,		6 },
	{ "queue",		op_queue,		8 },
	{ "dequeue",		op_dequeue,		6 },
	{ "status",		op_status,		2 },
	{ "wait",		op_wait,		2 },
	{ "export",		op_export,		4 },
	{ "vcam_unknown",	op_vcam_unknown,	1 },
	{ "vcam_mmap",		op_vcam_mmap,		2 },
	{ "video_open",		op_video_open,		4 },
	{ "video_close",	op_video_close,		1 },
	{ "info",		op_info,		3 },
	{ "fmt",		op_fmt,			3 },
	{ "parm",		op_parm,		2 },
	{ "reqbufs",		op_reqbufs,		3 },
	{ "create_bufs",	op_create_bufs,		2 },
	{ "querybuf_mmap",	op_querybuf_mmap,	3 },
	{ "qbuf",		op_qbuf,		6 },
	{ "dqbuf",		op_dqbuf,		5 },
	{ "expbuf",		op_expbuf,		2 },
	{ "stream",		op_stream,		3 },
	{ "v4l2_other",		op_v4l2_other,		1 },
	{ "poll",		op_poll,		3 },
	{ "read",		op_read,		1 },
	{ "udmabuf",		op_udmabuf,		2 },
	{ "vgem",		op_vgem,		2 },
	{ "dmabuf_close",	op_dbuf_close,		2 },
	{ "dmabuf_mmap",	op_dbuf_mmap,		1 },
	{ "dmabuf_sync",	op_dbuf_sync,		1 },
	{ "touch",		op_touch,		2 },
	{ "munmap",		op_munmap,		2 },
	{ "start_consumer",	op_start_consumer,	4 },
	{ "produce",		op_produce,		10 },
	{ "consume",		op_consume,		10 },
};

static unsigned int total_weight;

static const struct op *pick_op(struct thread *t)
{
	unsigned int w = rnd(t, total_weight);
	size_t k = 0;

	while (w >= ops[k].weight)
		w -= ops[k++].weight;
	return &ops[k];
}

/* ---------------------------------------------------------------------- */
/* Threads, the watchdog, reports                                           */

static unsigned long max_ops;
static int64_t deadline;

static void *worker(void *arg)
{
	struct thread *t = arg;

	t->tid = syscall(SYS_gettid);
	while (!atomic_load(&stopping) && now_ns() < deadline &&
	       (!max_ops || t->ops < max_ops)) {
		pick_op(t)->fn(t);
		t->ops++;
	}
	return NULL;
}

static void print_ring(struct thread *t)
{
	unsigned long first = t->nrec > TRACE_RING ? t->nrec - TRACE_RING : 0;

	fprintf(stderr, "vcam-fuzz: thread %d (tid %d), op %lu, %s%s, last calls:\n",
		t->nr, t->tid, t->ops, atomic_load(&t->since) ? "in " : "between calls",
		atomic_load(&t->since) ? call_names[atomic_load(&t->current)] : "");
	for (unsigned long n = first; n < t->nrec; n++) {
		struct rec *r = &t->ring[n % TRACE_RING];

		fprintf(stderr, "  %s fd %d arg %#lx: %s\n",
			call_names[r->call], r->fd, r->arg,
			r->err ? strerror(r->err) : "ok");
	}
}

static void print_kernel_stack(pid_t tid)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", tid);
	f = fopen(path, "r");
	if (!f)
		return;
	fprintf(stderr, "vcam-fuzz: kernel stack of tid %d:\n", tid);
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  %s", line);
	fclose(f);
}

static void on_fatal(int sig)
{
	char msg[128];
	int n;

	n = snprintf(msg, sizeof(msg), "vcam-fuzz: fatal signal %d (seed %llu); "
		     "last calls follow\n", sig, (unsigned long long)seed);
	if (write(2, msg, n) < 0)
		_exit(3);
	for (int k = 0; k < nthreads; k++)
		print_ring(&threads[k]);
	_exit(3);
}

static void on_interrupt(int sig)
{
	(void)sig;	/* only there to end a blocking call with EINTR */
}

/*
 * Interrupts calls longer than INTERRUPT_MS; reports a call that does not
 * end for HANG_S seconds, signals or not, and exits.
 */
static int hang_s = 30;

static void *watchdog(void *arg)
{
	(void)arg;
	while (!atomic_load(&stopping)) {
		int64_t now = now_ns();

		for (int k = 0; k < nthreads; k++) {
			struct thread *t = &threads[k];
			int64_t since = atomic_load(&t->since);

			if (!since || now - since < INTERRUPT_MS * 1000000LL)
				continue;
			if (now - since > hang_s * 1000000000LL) {
				fprintf(stderr, "vcam-fuzz: HANG: thread %d in %s "
					"for %d s (seed %llu)\n", k,
					call_names[atomic_load(&t->current)],
					hang_s, (unsigned long long)seed);
				print_kernel_stack(t->tid);
				for (int j = 0; j < nthreads; j++)
					print_ring(&threads[j]);
				_exit(2);
			}
			pthread_kill(t->handle, SIGUSR1);
		}
		usleep(20000);
	}
	return NULL;
}

static const char *errname(int e)
{
	static const char *const names[NERRNO + 1] = {
		[EPERM] = "EPERM", [ENOENT] = "ENOENT", [EINTR] = "EINTR",
		[EIO] = "EIO", [ENXIO] = "ENXIO", [E2BIG] = "E2BIG",
		[EBADF] = "EBADF", [EAGAIN] = "EAGAIN", [ENOMEM] = "ENOMEM",
		[EACCES] = "EACCES", [EFAULT] = "EFAULT", [EBUSY] = "EBUSY",
		[EEXIST] = "EEXIST", [ENODEV] = "ENODEV", [EINVAL] = "EINVAL",
		[ENFILE] = "ENFILE", [EMFILE] = "EMFILE", [ENOTTY] = "ENOTTY",
		[EFBIG] = "EFBIG", [ENOSPC] = "ENOSPC", [ESPIPE] = "ESPIPE",
		[EPIPE] = "EPIPE", [ERANGE] = "ERANGE", [EDQUOT] = "EDQUOT",
		[EOVERFLOW] = "EOVERFLOW", [ENOSYS] = "ENOSYS",
		[EOPNOTSUPP] = "EOPNOTSUPP", [ETIMEDOUT] = "ETIMEDOUT",
		[ENOLINK] = "ENOLINK",
	};
	static char other[16];

	if (e > 0 && e < NERRNO && names[e])
		return names[e];
	if (e == NERRNO)
		return "other";
	snprintf(other, sizeof(other), "errno%d", e);
	return other;
}

/* Per call: calls, successes, then each errno seen with its count */
static void print_summary(double seconds)
{
	static unsigned long sum[NCALLS][NERRNO + 1];
	unsigned long total = 0, ops_done = 0;

	for (int k = 0; k < nthreads; k++) {
		ops_done += threads[k].ops;
		for (int c = 0; c < NCALLS; c++)
			for (int e = 0; e <= NERRNO; e++)
				sum[c][e] += threads[k].stats[c][e];
	}
	for (int c = 0; c < NCALLS; c++)
		for (int e = 0; e <= NERRNO; e++)
			total += sum[c][e];
	printf("vcam-fuzz: seed %llu, %d threads, %.1f s: %lu operations, "
	       "%lu calls (%.0f calls/s)\n", (unsigned long long)seed, nthreads,
	       seconds, ops_done, total, total / seconds);
	printf("vcam-fuzz: frames of the cameras closed:");
	for (size_t k = 0; k < ARRAY_SIZE(counters); k++)
		printf(" %s %lu", counters[k], frames[k]);
	printf("\n");
	printf("%-20s %9s %9s  %s\n", "call", "calls", "ok", "errors");
	for (int c = 0; c < NCALLS; c++) {
		unsigned long calls = 0;

		for (int e = 0; e <= NERRNO; e++)
			calls += sum[c][e];
		printf("%-20s %9lu %9lu ", call_names[c], calls, sum[c][0]);
		for (int e = 1; e <= NERRNO; e++)
			if (sum[c][e])
				printf(" %s:%lu", errname(e), sum[c][e]);
		printf("\n");
	}
}

/*
 * Close every descriptor and unmap every mapping; then no descriptor of a
 * device, a DMA-BUF or a memfd may be left open in this process. Returns
 * the number left (closed here, but counted: an fd the fuzzer did not know
 * it had, from an ioctl with random arguments).
 */
static int clean_up(void)
{
	char path[64], target[256];
	struct dirent *de;
	int left = 0;
	DIR *dir;

	for (int i = 0; i < NCAP; i++)
		if (caps[i].fd >= 0)
			close(caps[i].fd);
	for (int i = 0; i < NCTRL; i++)
		if (ctrls[i].fd >= 0)
			close_ctrl(NULL, &ctrls[i]);
	for (int i = 0; i < NDBUF; i++)
		if (dbufs[i].fd >= 0)
			close(dbufs[i].fd);
	for (int i = 0; i < NMAP; i++)
		if (maps[i].addr)
			munmap(maps[i].addr, maps[i].len);
	if (udmabuf_dev >= 0)
		close(udmabuf_dev);
	if (vgem_dev >= 0)
		close(vgem_dev);
	munmap(arena, USERPTR_ARENA + page_size);

	dir = opendir("/proc/self/fd");
	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		int fd = atoi(de->d_name);
		ssize_t n;

		if (de->d_name[0] == '.' || fd <= 2 || fd == dirfd(dir))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		fprintf(stderr, "vcam-fuzz: fd %d (%s) left open; closed\n", fd,
			target);
		close(fd);
		left++;
	}
	closedir(dir);
	return left;
}

/* The fourccs the driver supports, from its sysfs attribute */
static void read_formats(void)
{
	FILE *f = fopen("/sys/class/misc/vcam/formats", "r");
	char cc[8];

	while (f && nformats < ARRAY_SIZE(formats) && fscanf(f, "%4s", cc) == 1)
		formats[nformats++] = v4l2_fourcc(cc[0], cc[1], cc[2], cc[3]);
	if (f)
		fclose(f);
	if (!nformats) {
		formats[nformats++] = V4L2_PIX_FMT_YUYV;
		formats[nformats++] = V4L2_PIX_FMT_NV12;
		formats[nformats++] = V4L2_PIX_FMT_MJPEG;
	}
}

/* vgem's card node, if the vgem module is loaded */
static int open_vgem(void)
{
	char path[PATH_MAX], link[PATH_MAX];
	ssize_t n;

	for (int k = 0; k < 16; k++) {
		snprintf(path, sizeof(path), "/sys/class/drm/card%d/device", k);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(strrchr(link, '/') ? strrchr(link, '/') + 1 : link,
			   "vgem"))
			continue;
		snprintf(path, sizeof(path), "/dev/dri/card%d", k);
		return open(path, O_RDWR | O_CLOEXEC);
	}
	return -1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vcam-fuzz [--seed N] [--seconds S] [--threads T] [--ops N]\n"
		"                 [--hang S] [--trace]\n"
		"\n"
		"Random, structure-aware calls on /dev/vcam and the capture nodes it\n"
		"creates, from several threads; prints the seed first and a summary\n"
		"last. Exit status: 0 done and clean, 1 descriptors left over,\n"
		"2 a call hung, 3 a fatal signal, 64 bad usage.\n"
		"\n"
		"  --seed N      the run's seed (default: from the clock)\n"
		"  --seconds S   how long to run (default 10)\n"
		"  --threads T   threads sharing the descriptors (default 4, max %d)\n"
		"  --ops N       stop each thread after N operations\n"
		"  --hang S      a call blocked S seconds is a hang (default 30)\n"
		"  --trace       print every call as it returns\n"
		"  --avoid qbuf-errors\n"
		"                queue capture buffers with valid memory only (keeps\n"
		"                a known driver bug away; fuzz/README.md)\n"
		"\n"
		"examples:\n"
		"  vcam-fuzz --seconds 20 --threads 4\n"
		"  vcam-fuzz --seed 1234 --threads 1 --ops 5000 --trace\n",
		MAX_THREADS);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "threads", required_argument, NULL, 'j' },
		{ "ops", required_argument, NULL, 'n' },
		{ "hang", required_argument, NULL, 'H' },
		{ "trace", no_argument, NULL, 'v' },
		{ "avoid", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct sigaction sa = { 0 };
	double seconds = 10;
	pthread_rwlockattr_t attr;
	pthread_t dog;
	int64_t start;
	bool seeded = false;
	int opt, left;
	char *end;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, &end, 0);
			seeded = true;
			break;
		case 't':
			seconds = strtod(optarg, &end);
			break;
		case 'j':
			nthreads = strtol(optarg, &end, 0);
			break;
		case 'n':
			max_ops = strtoul(optarg, &end, 0);
			break;
		case 'H':
			hang_s = strtol(optarg, &end, 0);
			break;
		case 'v':
			trace = true;
			continue;
		case 'a':
			if (strcmp(optarg, "qbuf-errors")) {
				fprintf(stderr, "vcam-fuzz: --avoid knows only "
					"qbuf-errors, not %s\n", optarg);
				return 64;
			}
			avoid_qbuf_errors = true;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
		if (*end || end == optarg) {
			fprintf(stderr, "vcam-fuzz: not a number: %s\n", optarg);
			return 64;
		}
	}
	if (optind < argc || nthreads < 1 || nthreads > MAX_THREADS ||
	    seconds <= 0 || hang_s < 1) {
		usage(stderr);
		return 64;
	}
	if (!seeded)
		seed = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
	printf("vcam-fuzz: seed %llu%s\n", (unsigned long long)seed,
	       avoid_qbuf_errors ? " (avoiding qbuf-errors)" : "");
	fflush(stdout);

	if (access("/dev/vcam", R_OK | W_OK)) {
		fprintf(stderr, "vcam-fuzz: /dev/vcam: %s (is vcam loaded?)\n",
			strerror(errno));
		return 1;
	}
	page_size = sysconf(_SC_PAGESIZE);
	read_formats();
	udmabuf_dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	vgem_dev = open_vgem();
	printf("vcam-fuzz: DMA-BUFs from vcam EXPORT, EXPBUF%s%s\n",
	       udmabuf_dev >= 0 ? ", udmabuf" : "", vgem_dev >= 0 ? ", vgem" : "");
	arena = mmap(NULL, USERPTR_ARENA + page_size, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (arena == MAP_FAILED ||
	    mprotect(arena, USERPTR_ARENA, PROT_READ | PROT_WRITE)) {
		perror("vcam-fuzz: mmap");
		return 1;
	}
	guard = arena + USERPTR_ARENA;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	for (int i = 0; i < NCTRL; i++) {
		pthread_rwlock_init(&ctrls[i].lock, &attr);
		ctrls[i].fd = -1;
	}
	for (int i = 0; i < NCAP; i++) {
		pthread_rwlock_init(&caps[i].lock, &attr);
		caps[i].fd = -1;
	}
	for (int i = 0; i < NDBUF; i++) {
		pthread_rwlock_init(&dbufs[i].lock, &attr);
		dbufs[i].fd = -1;
	}
	for (size_t k = 0; k < ARRAY_SIZE(ops); k++)
		total_weight += ops[k].weight;

	sa.sa_handler = on_interrupt;	/* no SA_RESTART: calls end with EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_fatal;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);

	start = now_ns();
	deadline = start + (int64_t)(seconds * 1e9);
	for (int k = 0; k < nthreads; k++) {
		threads[k].nr = k;
		threads[k].rng = seed ^ (0x9e3779b97f4a7c15ULL * (k + 1));
		pthread_create(&threads[k].handle, NULL, worker, &threads[k]);
	}
	pthread_create(&dog, NULL, watchdog, NULL);
	for (int k = 0; k < nthreads; k++)
		pthread_join(threads[k].handle, NULL);
	atomic_store(&stopping, true);
	pthread_join(dog, NULL);

	left = clean_up();
	print_summary((now_ns() - start) / 1e9);
	if (left) {
		printf("vcam-fuzz: %d descriptor(s) were left open\n", left);
		return 1;
	}
	printf("vcam-fuzz: clean: every descriptor closed, every mapping unmapped\n");
	return 0;
}
