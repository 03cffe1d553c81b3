// SPDX-License-Identifier: MIT
/*
 * The open-addressing table the writer and the runtime share
 * (userspace/lib/table.c): what is put is found, with its value, across
 * growth; what was not put is not; clear empties it and keeps it usable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kselftest_harness.h"
#include "../userspace/lib/table.h"

struct val {
	uint64_t a, b, c;	/* 24 bytes, as the writer's struct ref */
};

/* Keys shaped like the users' ones: object addresses (16-byte aligned,
 * close together) and small indices plus one. */
static uintptr_t addr_key(size_t i)
{
	return 0x7f0000001000ULL + i * 16;
}

TEST(empty_finds_nothing)
{
	struct pycds_table t = { .val_size = sizeof(struct val) };

	EXPECT_EQ(NULL, pycds_table_find(&t, 1));
	EXPECT_EQ(NULL, pycds_table_find(&t, addr_key(0)));
	pycds_table_clear(&t);
	EXPECT_EQ(0UL, t.used);
}

TEST(values_survive_growth)
{
	struct pycds_table t = { .val_size = sizeof(struct val) };
	const size_t n = 50000;
	size_t i;

	for (i = 0; i < n; i++) {
		struct val *v = pycds_table_put(&t, addr_key(i));

		ASSERT_NE(NULL, v);
		EXPECT_EQ(0ULL, v->a);	/* a new value is zeroed */
		v->a = i;
		v->b = ~i;
		v->c = i * 3;
	}
	EXPECT_EQ(n, t.used);
	EXPECT_GE(t.cap, 2 * n);
	for (i = 0; i < n; i++) {
		struct val *v = pycds_table_find(&t, addr_key(i));

		ASSERT_NE(NULL, v);
		EXPECT_EQ(i, v->a);
		EXPECT_EQ(~i, v->b);
		EXPECT_EQ(i * 3, v->c);
	}
	/* Between the keys put, and past them: absent. */
	for (i = 0; i < 1000; i++) {
		EXPECT_EQ(NULL, pycds_table_find(&t, addr_key(i) + 8));
		EXPECT_EQ(NULL, pycds_table_find(&t, addr_key(n + i)));
	}
	free(t.e);
}

TEST(put_twice_is_one_entry)
{
	struct pycds_table t = { .val_size = sizeof(void *) };
	void **v = pycds_table_put(&t, 7);

	ASSERT_NE(NULL, v);
	*v = &t;
	v = pycds_table_put(&t, 7);
	ASSERT_NE(NULL, v);
	EXPECT_EQ(&t, *v);
	EXPECT_EQ(1UL, t.used);
	free(t.e);
}

TEST(a_set_has_no_values)
{
	struct pycds_table t = { .val_size = 0 };
	size_t i;

	for (i = 1; i <= 3000; i++)
		ASSERT_NE(NULL, pycds_table_put(&t, i));
	for (i = 1; i <= 3000; i++)
		EXPECT_NE(NULL, pycds_table_find(&t, i));
	EXPECT_EQ(NULL, pycds_table_find(&t, 3001));
	free(t.e);
}

TEST(clear_empties_and_keeps_it_usable)
{
	struct pycds_table t = { .val_size = sizeof(struct val) };
	size_t i, cap;

	for (i = 0; i < 5000; i++)
		ASSERT_NE(NULL, pycds_table_put(&t, addr_key(i)));
	cap = t.cap;
	pycds_table_clear(&t);
	EXPECT_EQ(0UL, t.used);
	EXPECT_EQ(cap, t.cap);
	for (i = 0; i < 5000; i++)
		EXPECT_EQ(NULL, pycds_table_find(&t, addr_key(i)));
	ASSERT_NE(NULL, pycds_table_put(&t, addr_key(1)));
	EXPECT_NE(NULL, pycds_table_find(&t, addr_key(1)));
	EXPECT_EQ(NULL, pycds_table_find(&t, addr_key(2)));
	free(t.e);
}

TEST_HARNESS_MAIN
