// SPDX-License-Identifier: GPL-2.0+
/*
 * labfaults - commits, when loaded, the faults the lab's debug kernel
 * (lab/debug-kernel.sh) is there to report, so that a test can see each
 * report fail a lab/vm-run run (tests/test_debug_kernel.py). It leaves
 * the kernel tainted and lockdep off: load it only in a throwaway guest.
 *
 * faults= names the faults, comma-separated, committed in that order
 * (default: all but recursive, KASAN's last: lockdep reports only its first
 * finding in a boot, and a KASAN report taints the kernel, which turns
 * lockdep off):
 *   leak       a kmalloc() nobody frees or points to (kmemleak)
 *   kasan      a read one byte past a kmalloc()ed object (KASAN)
 *   circular   mutexes A then B, later B then A (lockdep)
 *   recursive  two mutexes of one class held at once (lockdep)
 *   atomic     might_sleep() under a spinlock (DEBUG_ATOMIC_SLEEP)
 *   list       list_add() next to a corrupted entry (DEBUG_LIST)
 */
#include <linux/compiler.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>

static char *faults = "circular,leak,atomic,list,kasan";
module_param(faults, charp, 0444);
MODULE_PARM_DESC(faults, "the faults to commit, comma-separated");

static noinline void fault_leak(void)
{
	void *lost = kmalloc(128, GFP_KERNEL);

	/* The only pointer dies with this frame (and insmod's stack with it). */
	OPTIMIZER_HIDE_VAR(lost);
}

static noinline void fault_kasan(void)
{
	char *object = kmalloc(8, GFP_KERNEL);
	size_t past = 8;

	if (!object)
		return;
	OPTIMIZER_HIDE_VAR(past);
	pr_info("labfaults: read past the end: %d\n", READ_ONCE(object[past]));
	kfree(object);
}

static DEFINE_MUTEX(lock_a);
static DEFINE_MUTEX(lock_b);

static noinline void fault_circular(void)
{
	mutex_lock(&lock_a);
	mutex_lock(&lock_b);
	mutex_unlock(&lock_b);
	mutex_unlock(&lock_a);
	/* The reverse order: a deadlock with two threads; lockdep sees it in one. */
	mutex_lock(&lock_b);
	mutex_lock(&lock_a);
	mutex_unlock(&lock_a);
	mutex_unlock(&lock_b);
}

static noinline void fault_recursive(void)
{
	struct mutex pair[2];
	int i;

	for (i = 0; i < 2; i++)
		mutex_init(&pair[i]);	/* one init site: one lock class */
	mutex_lock(&pair[0]);
	mutex_lock(&pair[1]);
	mutex_unlock(&pair[1]);
	mutex_unlock(&pair[0]);
}

static DEFINE_SPINLOCK(spin);

static noinline void fault_atomic(void)
{
	spin_lock(&spin);
	might_sleep();
	spin_unlock(&spin);
}

static noinline void fault_list(void)
{
	LIST_HEAD(head);
	struct list_head entry, stray = { .next = NULL, .prev = NULL };

	/* head's successor does not point back: list_add() refuses it. */
	head.next = &stray;
	list_add(&entry, &head);
}

static const struct {
	const char *name;
	void (*commit)(void);
} all_faults[] = {
	{ "leak", fault_leak },
	{ "kasan", fault_kasan },
	{ "circular", fault_circular },
	{ "recursive", fault_recursive },
	{ "atomic", fault_atomic },
	{ "list", fault_list },
};

static int __init labfaults_init(void)
{
	char *names, *cursor, *name;
	size_t i;

	names = kstrdup(faults, GFP_KERNEL);
	if (!names)
		return -ENOMEM;
	cursor = names;
	while ((name = strsep(&cursor, ",")) != NULL) {
		for (i = 0; i < ARRAY_SIZE(all_faults); i++)
			if (!strcmp(name, all_faults[i].name))
				break;
		if (i == ARRAY_SIZE(all_faults)) {
			pr_err("labfaults: unknown fault '%s'\n", name);
			kfree(names);
			return -EINVAL;
		}
		pr_info("labfaults: committing %s\n", name);
		all_faults[i].commit();
	}
	kfree(names);
	return 0;
}

static void __exit labfaults_exit(void)
{
}

module_init(labfaults_init);
module_exit(labfaults_exit);
MODULE_DESCRIPTION("Faults for the lab's debug-kernel test");
MODULE_LICENSE("GPL");
