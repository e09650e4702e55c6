"""The frame path: pairing, zero-copy whatever the order, copy, errors,
back-pressure, no torn frames, a truthful frame rate."""

import errno
import random
import select
import time

import pytest

from producer import v4l2
from vcam_helpers import Camera, Capture, expect_errno, foreign_dmabuf, ProducerThread, start_capture, stats

# every_kernel: also in the kernel tier of the lab's other kernels (make test)
pytestmark = [pytest.mark.guest, pytest.mark.every_kernel]

DMABUF = v4l2.V4L2_MEMORY_DMABUF


def test_copy_path_mmap_in_order():
    with Camera(nr_frames=4) as cam, Capture(cam.video) as cap:
        start_capture(cap, 4)
        for i in range(4):
            cam.fill_and_queue(i, 0x10 + i)
        for i in range(4):
            b = cap.dqbuf()
            assert b.index == i and b.sequence == i
            assert not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
            assert cap.data(b) == bytes([0x10 + i]) * cam.size
        assert sorted(cam.dequeue().index for _ in range(4)) == [0, 1, 2, 3]
        s = stats(cam.nr)
        assert (s["frames_copied"], s["frames_zero_copy"], s["bytes_copied"]) == (4, 0, 4 * cam.size)
        cap.streamoff()


def test_copy_path_into_foreign_dmabuf():
    """Capture buffers importing DMA-BUFs of their own get a copy."""
    with Camera(nr_frames=2) as cam, Capture(cam.video) as cap:
        own = [foreign_dmabuf(cam.size) for _ in range(2)]
        cap.reqbufs(2, DMABUF)
        for i in range(2):
            own[i].fill(0)
            cap.qbuf(i, own[i].fd, own[i].size)
        cap.streamon()
        cam.fill_and_queue(0, 0xA5)
        b = cap.dqbuf()
        assert own[b.index].read(cam.size) == b"\xa5" * cam.size
        assert stats(cam.nr)["frames_copied"] == 1
        cap.streamoff()
        for d in own:
            d.close()


def zero_copy_setup(cam, cap, order):
    """The consumer imports the producer's DMA-BUFs, capture buffer i
    importing slot order[i]."""
    cap.reqbufs(len(order), DMABUF)
    for i, slot in enumerate(order):
        cap.qbuf(i, cam.bufs[slot].fd, cam.bufs[slot].size)
    return {slot: i for i, slot in enumerate(order)}


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]])
def test_zero_copy_whatever_the_capture_order(order):
    with Camera(nr_frames=4) as cam, Capture(cam.video) as cap:
        cap_of = zero_copy_setup(cam, cap, order)
        cap.streamon()
        for slot in range(4):
            cam.fill_and_queue(slot, 0x30 + slot)
        for n in range(4):
            b = cap.dqbuf()
            # frames stay in order, each lands in the buffer sharing its memory
            assert b.sequence == n
            assert b.index == cap_of[n]
            assert b.bytesused == cam.size and not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
            assert cam.bufs[n].read(cam.size) == bytes([0x30 + n]) * cam.size
        s = stats(cam.nr)
        assert (s["frames_zero_copy"], s["frames_copied"], s["bytes_copied"]) == (4, 0, 0)
        cap.streamoff()


def drain_and_refill(cam, next_frame, limit):
    """Producer side: refill every slot that came back, non-blocking."""
    p = select.poll()
    p.register(cam.ctl.fd, select.POLLIN)
    while p.poll(0) and next_frame < limit:
        d = cam.ctl.dequeue()
        cam.fill_and_queue(d.index, next_frame & 0xFF)
        next_frame += 1
    return next_frame


def test_zero_copy_random_requeue_order_and_slot_held():
    rng = random.Random(1234)
    n_frames = 80
    with Camera(nr_frames=4) as cam, Capture(cam.video) as cap:
        order = [1, 3, 0, 2]
        zero_copy_setup(cam, cap, order)
        cap.streamon()
        for slot in range(4):
            cam.fill_and_queue(slot, slot)
        next_frame = 4
        held = []
        for n in range(n_frames):
            b = cap.dqbuf()
            assert b.sequence == n
            slot = order[b.index]
            assert cam.bufs[slot].read(cam.size) == bytes([n & 0xFF]) * cam.size
            held.append(b.index)
            # weakness 7: a slot whose frame the consumer holds is not handed back
            next_frame = drain_and_refill(cam, next_frame, n_frames + 4)
            assert stats(cam.nr)["frames_dequeued"] <= n + 1 - len(held)
            rng.shuffle(held)
            keep = rng.randint(0, 2)
            while len(held) > keep:
                i = held.pop()
                cap.qbuf(i, cam.bufs[order[i]].fd, cam.bufs[order[i]].size)
            next_frame = drain_and_refill(cam, next_frame, n_frames + 4)
        s = stats(cam.nr)
        assert s["frames_copied"] == 0 and s["frames_errored"] == 0
        assert s["frames_zero_copy"] >= n_frames  # the last buffers queued got more
        cap.streamoff()


def test_zero_copy_slot_released_on_requeue_or_streamoff():
    with Camera(nr_frames=2, nonblock=True) as cam, Capture(cam.video) as cap:
        zero_copy_setup(cam, cap, [0, 1])
        cap.streamon()
        cam.fill_and_queue(0, 1)
        cam.fill_and_queue(1, 2)
        b0 = cap.dqbuf()
        b1 = cap.dqbuf()
        time.sleep(0.2)
        expect_errno(errno.EAGAIN, cam.ctl.dequeue)  # both held by the consumer
        cap.qbuf(b0.index, cam.bufs[0].fd, cam.bufs[0].size)
        assert cam.dequeue().index == 0
        expect_errno(errno.EAGAIN, cam.ctl.dequeue)
        cap.streamoff()  # releases what is still in flight
        assert cam.dequeue().index == 1
        assert b1.index == 1


def test_short_payload_uncompressed_is_an_error():
    with Camera(nr_frames=2) as cam, Capture(cam.video) as cap:
        start_capture(cap, 2)
        cam.fill_and_queue(0, 9, length=cam.size - 2)
        b = cap.dqbuf()
        assert b.flags & v4l2.V4L2_BUF_FLAG_ERROR
        d = cam.dequeue()
        assert (d.index, d.length) == (0, cam.size - 2)
        cam.fill_and_queue(1, 10)
        b = cap.dqbuf()
        assert not b.flags & v4l2.V4L2_BUF_FLAG_ERROR and cap.data(b) == b"\x0a" * cam.size
        s = stats(cam.nr)
        assert (s["frames_errored"], s["frames_copied"]) == (1, 1)
        cap.streamoff()


def test_compressed_payload_may_be_short():
    with Camera(nr_frames=2, pixelformat=v4l2.V4L2_PIX_FMT_MJPEG) as cam, Capture(cam.video) as cap:
        start_capture(cap, 1)
        cam.fill_and_queue(0, 0xFF, length=1000)
        b = cap.dqbuf()
        assert b.bytesused == 1000 and not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
        assert cap.data(b) == b"\xff" * 1000
        assert cam.dequeue().length == 1000
        cap.streamoff()


def test_back_pressure_never_drops():
    with Camera(nr_frames=3, nonblock=True) as cam:
        for i in range(3):
            cam.fill_and_queue(i, i)
        expect_errno(errno.EBUSY, cam.fill_and_queue, 0, 0)
        expect_errno(errno.EAGAIN, cam.ctl.dequeue)
        with Capture(cam.video) as cap:
            cap.reqbufs(1)  # a slow consumer: one buffer
            cap.qbuf(0)
            cap.streamon()
            seen = []
            next_frame = 3
            while len(seen) < 12:
                b = cap.dqbuf()
                seen.append((b.sequence, cap.data(b)[0]))
                cap.qbuf(0)
                next_frame = drain_and_refill(cam, next_frame, 12)
            assert seen == [(n, n) for n in range(12)]
            s = stats(cam.nr)
            assert s["frames_queued"] == 12 and s["frames_copied"] == 12
            cap.streamoff()


@pytest.mark.parametrize("zero_copy", [True, False])
def test_no_torn_frames_with_immediate_refill(zero_copy):
    """The producer refills each slot the moment it comes back; the consumer
    reads every frame twice, a while apart: it must be whole and unchanged."""
    n_frames = 3000 if zero_copy else 1000
    with Camera(nr_frames=4, width=64, height=32) as cam, Capture(cam.video) as cap:
        if zero_copy:
            zero_copy_setup(cam, cap, [0, 1, 2, 3])
        else:
            cap.reqbufs(4)
            for i in range(4):
                cap.qbuf(i)

        def read(b):
            if zero_copy:
                return cam.bufs[b.index].read(cam.size)
            return cap.data(b)

        cap.streamon()
        with ProducerThread(cam, pattern=lambda n: n & 0xFF):
            for n in range(n_frames):
                b = cap.dqbuf()
                first = read(b)
                assert first == bytes([n & 0xFF]) * cam.size, f"frame {n} torn or wrong"
                time.sleep(0)
                assert read(b) == first, f"frame {n} overwritten while held"
                if zero_copy:
                    cap.qbuf(b.index, cam.bufs[b.index].fd, cam.bufs[b.index].size)
                else:
                    cap.qbuf(b.index)
        cap.streamoff()
        s = stats(cam.nr)
        assert s["frames_errored"] == 0
        assert s["frames_zero_copy" if zero_copy else "frames_copied"] >= n_frames


@pytest.mark.parametrize("fps", [10, 25])
def test_g_parm_reports_the_rate_the_producer_delivers(fps):
    with Camera(nr_frames=3) as cam, Capture(cam.video) as cap:
        start_capture(cap, 3)
        v4l2.s_parm(cap.fd, 1, 30)  # a wish: the producer decides
        with ProducerThread(cam, fps=fps):
            stamps = []
            for _ in range(2 * fps):
                b = cap.dqbuf()
                stamps.append(b.timestamp_ns())
                cap.qbuf(b.index)
            tpf = v4l2.g_parm(cap.fd).parm.capture.timeperframe
            assert stats(cam.nr)["fps"] == fps
        received = (len(stamps) - 1) * 1e9 / (stamps[-1] - stamps[0])
        assert tpf.numerator == 1
        assert tpf.denominator == fps, f"G_PARM says {tpf.denominator} fps, the producer sends {fps}"
        assert abs(received - fps) < 0.1 * fps
        cap.streamoff()


def test_partial_import_never_copies_into_the_producers_memory():
    """The consumer imported only slot 1's DMA-BUF. Frame 1 (slot 0) has no
    buffer sharing its memory and the only queued capture buffer is slot 1's
    memory: copying there would overwrite frame 2. Frame 1 completes with the
    error flag instead, unwritten, and frame 2 still arrives whole,
    zero-copy."""
    with Camera(nr_frames=2) as cam, Capture(cam.video) as cap:
        cap.reqbufs(1, DMABUF)
        cap.qbuf(0, cam.bufs[1].fd, cam.bufs[1].size)
        cap.streamon()
        # Frame 0 from slot 1: the driver now knows slot 1's memory.
        cam.fill_and_queue(1, 0xB0)
        b = cap.dqbuf()
        assert b.sequence == 0 and not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
        cap.qbuf(0, cam.bufs[1].fd, cam.bufs[1].size)
        assert cam.dequeue().index == 1
        cam.fill_and_queue(0, 0xA1)
        cam.fill_and_queue(1, 0xB2)
        b = cap.dqbuf()
        assert b.sequence == 1 and b.flags & v4l2.V4L2_BUF_FLAG_ERROR
        assert cam.dequeue().index == 0  # frame 1 came back to the producer
        assert cam.bufs[1].read(cam.size) == b"\xb2" * cam.size
        cap.qbuf(0, cam.bufs[1].fd, cam.bufs[1].size)
        b = cap.dqbuf()
        assert b.sequence == 2 and not b.flags & v4l2.V4L2_BUF_FLAG_ERROR
        assert cam.bufs[1].read(cam.size) == b"\xb2" * cam.size
        s = stats(cam.nr)
        assert (s["frames_zero_copy"], s["frames_copied"], s["frames_errored"]) == (2, 0, 1)
        cap.streamoff()


def test_frame_waits_for_the_held_buffer_that_shares_its_memory():
    """Capture buffer 0 imports slot 0's DMA-BUF but the consumer holds it;
    only buffer 1 (slot 1's memory) is queued. A frame from slot 0 must not
    be copied into slot 1's memory: it waits for buffer 0 and then goes
    there zero-copy, and the next frame, from slot 1, follows into buffer 1."""
    with Camera(nr_frames=3) as cam, Capture(cam.video) as cap:
        cap.reqbufs(2, DMABUF)
        for i in range(2):
            cap.qbuf(i, cam.bufs[i].fd, cam.bufs[i].size)
        cap.streamon()
        cam.fill_and_queue(0, 0xA0)
        cam.fill_and_queue(1, 0xB1)
        assert [(b.index, b.sequence) for b in (cap.dqbuf(), cap.dqbuf())] == [(0, 0), (1, 1)]
        cap.qbuf(0, cam.bufs[0].fd, cam.bufs[0].size)
        assert cam.dequeue().index == 0
        # Frame 2 from slot 2, whose memory nobody imported: the only queued
        # buffer is slot 0's memory, so it completes with the error flag.
        cam.fill_and_queue(2, 0xC2)
        b = cap.dqbuf()
        assert (b.index, b.sequence) == (0, 2) and b.flags & v4l2.V4L2_BUF_FLAG_ERROR
        assert cam.dequeue().index == 2
        # The consumer now holds buffer 0 and gives buffer 1 back.
        cap.qbuf(1, cam.bufs[1].fd, cam.bufs[1].size)
        assert cam.dequeue().index == 1
        cam.fill_and_queue(0, 0xA3)
        cam.fill_and_queue(1, 0xB4)
        with pytest.raises(TimeoutError):
            cap.dqbuf(timeout=1.0)
        assert cam.bufs[1].read(cam.size) == b"\xb4" * cam.size
        cap.qbuf(0, cam.bufs[0].fd, cam.bufs[0].size)
        first, second = cap.dqbuf(), cap.dqbuf()
        assert (first.index, first.sequence, second.index, second.sequence) == (0, 3, 1, 4)
        assert not (first.flags | second.flags) & v4l2.V4L2_BUF_FLAG_ERROR
        assert cam.bufs[0].read(cam.size) == b"\xa3" * cam.size
        assert cam.bufs[1].read(cam.size) == b"\xb4" * cam.size
        s = stats(cam.nr)
        assert (s["frames_zero_copy"], s["frames_copied"], s["frames_errored"]) == (4, 0, 1)
        cap.streamoff()


def test_frames_pending_at_streamoff_are_dropped_and_returned():
    """A consumer's STREAMOFF ends what was meant for it: frames it never got
    come back to the producer with a length of 0 and are counted as dropped;
    the next consumer starts with the frames queued after."""
    with Camera(nr_frames=4) as cam:
        with Capture(cam.video) as cap:
            start_capture(cap, 1)
            for slot in range(4):
                cam.fill_and_queue(slot, slot + 1)
            assert cap.data(cap.dqbuf()) == b"\x01" * cam.size
            cap.streamoff()
        back = {d.index: d.length for d in (cam.dequeue() for _ in range(4))}
        assert back == {0: cam.size, 1: 0, 2: 0, 3: 0}
        s = stats(cam.nr)
        assert (s["frames_queued"], s["frames_copied"], s["frames_dropped"]) == (4, 1, 3)
        with Capture(cam.video) as cap:
            start_capture(cap, 1)
            cam.fill_and_queue(2, 9)
            b = cap.dqbuf()
            assert b.sequence == 0 and cap.data(b) == b"\x09" * cam.size
            cap.streamoff()
        assert cam.dequeue().index == 2
