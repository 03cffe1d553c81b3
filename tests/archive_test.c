// SPDX-License-Identifier: MIT
/*
 * The archive reader and validator on synthetic archives: what it accepts,
 * and that every kind of damage is rejected before anything is used.
 */
#define XXH_INLINE_ALL
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kselftest_harness.h"
#include "pycds/reader.h"
#include "pycds/sum.h"

#define BASE 0x200000000000ULL
#define NMOD 3
#define SPAN 256	/* bytes of objects per module and region */

struct synth {
	uint8_t *buf;
	size_t size;
};

static void synth_sums(struct synth *s)
{
	pycds_seal(s->buf, s->size);
}

/* The checksums as the format document defines them, computed here
 * without the library, to pin pycds_seal() and the reader to them. */
static void sums_by_hand(struct synth *s)
{
	struct pycds_header *h = (void *)s->buf;
	struct pycds_module *m = (void *)(s->buf + h->modules_off);
	XXH3_state_t st;
	uint32_t i, r;

	for (i = 0; i < h->nr_modules; i++) {
		XXH3_64bits_reset(&st);
		for (r = 0; r < PYCDS_NR_REGIONS; r++)
			XXH3_64bits_update(&st, s->buf + m[i].span_off[r],
					   m[i].span_size[r]);
		XXH3_64bits_update(&st, s->buf + h->relocs_off + m[i].reloc_first * 4,
				   m[i].reloc_count * 4);
		XXH3_64bits_update(&st, s->buf + h->images_off + m[i].image_first * 8,
				   m[i].image_count * 8);
		XXH3_64bits_update(&st, s->buf + h->interns_off + m[i].intern_first * 8,
				   m[i].intern_count * 8);
		XXH3_64bits_update(&st, s->buf + h->fsets_off + m[i].fset_first * 8,
				   m[i].fset_count * 8);
		m[i].checksum = XXH3_64bits_digest(&st);
	}
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, m, h->nr_modules * sizeof(*m));
	XXH3_64bits_update(&st, s->buf + h->buckets_off, h->nr_buckets * 4);
	XXH3_64bits_update(&st, s->buf + h->names.off, h->names.size);
	h->meta_checksum = XXH3_64bits_digest(&st);
	for (i = 0; i < h->nr_names; i++) {
		struct pycds_name *n = (void *)(s->buf + h->names_index_off);

		n[i].hash = XXH3_64bits(s->buf + n[i].off, n[i].size);
	}
	h->header_checksum = 0;
	h->header_checksum = XXH3_64bits(h, sizeof(*h));
}

/*
 * NMOD modules named "m0".."m2" (origin "/src/mN.py"); each has SPAN bytes
 * in each region, one internal pointer (slot at its code span + 8, pointing
 * to its data span), one image slot (code span + 16, a code type at
 * 0x1000) and one intern fixup (code span + 24, names pool entry N).  The
 * pool holds NMOD 64-byte entries whose type pointer is 0x3000.
 */
static void synth_build(struct synth *s)
{
	struct pycds_header *h;
	struct pycds_module *m;
	uint32_t *buckets, *relocs;
	struct pycds_image_reloc *img;
	struct pycds_fixup *fix;
	struct pycds_name *index;
	uint64_t heap;
	char *names;
	uint32_t i, r, nameoff = 0;

	s->size = 6 * PYCDS_PAGE_SIZE + NMOD * SPAN * PYCDS_NR_ALL_REGIONS;
	s->size = (s->size + PYCDS_PAGE_SIZE - 1) & ~(size_t)(PYCDS_PAGE_SIZE - 1);
	s->buf = calloc(1, s->size);
	h = (void *)s->buf;
	memcpy(h->magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN);
	h->version = PYCDS_FORMAT_VERSION;
	h->header_size = sizeof(*h);
	h->file_size = s->size;
	h->preferred_base = BASE;
	h->modules_off = (sizeof(*h) + 63) & ~(size_t)63;
	h->nr_modules = NMOD;
	h->nr_buckets = 8;
	h->buckets_off = h->modules_off + NMOD * sizeof(*m);
	h->names.off = h->buckets_off + h->nr_buckets * 4;
	h->names.size = 0;
	names = (char *)s->buf + h->names.off;
	m = (void *)(s->buf + h->modules_off);
	buckets = (void *)(s->buf + h->buckets_off);
	for (i = 0; i < NMOD; i++) {
		char name[8], origin[32];
		uint32_t pos;

		snprintf(name, sizeof(name), "m%u", i);
		snprintf(origin, sizeof(origin), "/src/m%u.py", i);
		m[i].name_off = nameoff;
		m[i].name_len = strlen(name);
		memcpy(names + nameoff, name, m[i].name_len);
		nameoff += m[i].name_len;
		m[i].origin_off = nameoff;
		m[i].origin_len = strlen(origin);
		memcpy(names + nameoff, origin, m[i].origin_len);
		nameoff += m[i].origin_len;
		pos = pycds_name_hash(name, m[i].name_len) & (h->nr_buckets - 1);
		while (buckets[pos])
			pos = (pos + 1) & (h->nr_buckets - 1);
		buckets[pos] = i + 1;
	}
	h->names.size = nameoff;
	h->relocs_off = (h->names.off + nameoff + 7) & ~7ULL;
	h->nr_relocs = NMOD;
	h->images_off = h->relocs_off + NMOD * 8;
	h->nr_images = NMOD;
	h->interns_off = h->images_off + NMOD * 8;
	h->nr_interns = NMOD;
	h->fsets_off = h->interns_off + NMOD * 8;
	h->nr_fsets = 0;
	h->names_index_off = h->fsets_off;
	h->nr_names = NMOD;
	h->file_size = s->size;
	relocs = (void *)(s->buf + h->relocs_off);
	img = (void *)(s->buf + h->images_off);
	fix = (void *)(s->buf + h->interns_off);
	index = (void *)(s->buf + h->names_index_off);

	heap = 2 * PYCDS_PAGE_SIZE;
	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++) {
		h->regions[r].off = heap + r * PYCDS_PAGE_SIZE;
		h->regions[r].size = NMOD * SPAN;
	}
	h->regions[PYCDS_REGION_NAMES].size = NMOD * 64;
	for (i = 0; i < NMOD; i++) {
		uint64_t type = 0x3000;

		index[i].off = h->regions[PYCDS_REGION_NAMES].off + i * 64;
		index[i].size = 64;
		memcpy(s->buf + index[i].off + 8, &type, 8);
	}
	for (i = 0; i < NMOD; i++) {
		uint64_t target;

		for (r = 0; r < PYCDS_NR_REGIONS; r++) {
			m[i].span_off[r] = h->regions[r].off + i * SPAN;
			m[i].span_size[r] = SPAN;
		}
		m[i].root = m[i].span_off[PYCDS_REGION_CODE];
		m[i].src_mtime = 1000 + i;
		m[i].src_size = 10 + i;
		m[i].reloc_first = m[i].image_first = m[i].intern_first = i;
		m[i].reloc_count = m[i].image_count = m[i].intern_count = 1;
		relocs[i] = m[i].span_off[PYCDS_REGION_CODE] + 8;
		target = BASE + m[i].span_off[PYCDS_REGION_DATA];
		memcpy(s->buf + relocs[i], &target, 8);
		img[i].slot = m[i].span_off[PYCDS_REGION_CODE] + 16;
		img[i].kind = PYCDS_IMG_TYPE_CODE;
		target = 0x1000;
		memcpy(s->buf + img[i].slot, &target, 8);
		fix[i].slot = m[i].span_off[PYCDS_REGION_CODE] + 24;
		fix[i].arg = i;
		target = BASE + index[i].off;
		memcpy(s->buf + fix[i].slot, &target, 8);
	}
	synth_sums(s);
}

static struct pycds_archive synth_archive(struct synth *s)
{
	struct pycds_archive ar = {
		.base = s->buf, .size = s->size, .hdr = (void *)s->buf,
	};
	return ar;
}

static int full_check(struct synth *s, const struct pycds_image_ctx *ctx)
{
	struct pycds_archive ar = synth_archive(s);
	char err[PYCDS_ERR_LEN];
	uint32_t i;

	if (pycds_header_check(s->buf, s->size, err, sizeof(err)))
		return -1;
	if (pycds_meta_check(&ar, err, sizeof(err)))
		return -2;
	for (i = 0; i < ar.hdr->nr_names; i++)
		if (pycds_name_check(&ar, i, ctx, err, sizeof(err)))
			return -4;
	for (i = 0; i < ar.hdr->nr_modules; i++)
		if (pycds_module_check(&ar, i, ctx, err, sizeof(err)))
			return -3;
	return 0;
}

FIXTURE(archive) {
	struct synth s;
};

FIXTURE_SETUP(archive)
{
	synth_build(&self->s);
}

FIXTURE_TEARDOWN(archive)
{
	free(self->s.buf);
}

TEST_F(archive, accepts_sound_archive)
{
	ASSERT_EQ(0, full_check(&self->s, NULL));
}

TEST_F(archive, seal_matches_the_documented_checksums)
{
	uint8_t *copy = malloc(self->s.size);

	ASSERT_NE(NULL, copy);
	memcpy(copy, self->s.buf, self->s.size);
	sums_by_hand(&self->s);
	EXPECT_EQ(0, memcmp(copy, self->s.buf, self->s.size));
	free(copy);
}

TEST_F(archive, rejects_every_truncation)
{
	char err[PYCDS_ERR_LEN];
	size_t n;

	for (n = 0; n < self->s.size; n += (n < 1024 ? 1 : 97))
		EXPECT_NE(0, pycds_header_check(self->s.buf, n, err, sizeof(err)))
			TH_LOG("accepted a file truncated to %zu bytes", n);
}

TEST_F(archive, rejects_foreign_magic_and_version)
{
	struct pycds_header *h = (void *)self->s.buf;
	char err[PYCDS_ERR_LEN];

	h->magic[0] = 'X';
	EXPECT_EQ(-EINVAL, pycds_header_check(self->s.buf, self->s.size, err,
					      sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "magic"));
	h->magic[0] = 'P';
	h->version = PYCDS_FORMAT_VERSION + 1;
	synth_sums(&self->s);
	EXPECT_EQ(-EINVAL, pycds_header_check(self->s.buf, self->s.size, err,
					      sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "version"));
}

TEST_F(archive, rejects_any_header_bit_flip)
{
	char err[PYCDS_ERR_LEN];
	size_t i;
	int bit;

	for (i = 0; i < sizeof(struct pycds_header); i++) {
		for (bit = 0; bit < 8; bit += 3) {
			self->s.buf[i] ^= 1 << bit;
			EXPECT_NE(0, pycds_header_check(self->s.buf, self->s.size,
							err, sizeof(err)))
				TH_LOG("header byte %zu bit %d flip accepted", i, bit);
			self->s.buf[i] ^= 1 << bit;
		}
	}
}

TEST_F(archive, rejects_index_bit_flip)
{
	struct pycds_header *h = (void *)self->s.buf;
	size_t i, end = h->names.off + h->names.size;

	for (i = h->modules_off; i < end; i++) {
		self->s.buf[i] ^= 0x10;
		EXPECT_EQ(-2, full_check(&self->s, NULL))
			TH_LOG("index byte %zu flip accepted", i);
		self->s.buf[i] ^= 0x10;
	}
}

TEST_F(archive, rejects_object_bit_flip)
{
	struct pycds_header *h = (void *)self->s.buf;
	unsigned int r;
	size_t i;

	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++) {
		for (i = 0; i < h->regions[r].size; i += 37) {
			size_t at = h->regions[r].off + i;

			self->s.buf[at] ^= 0x01;
			EXPECT_EQ(r == PYCDS_REGION_NAMES ? -4 : -3,
				  full_check(&self->s, NULL))
				TH_LOG("%s byte %zu flip accepted",
				       pycds_region_name(r), i);
			self->s.buf[at] ^= 0x01;
		}
	}
}

/* Checksums that match do not make a bad table entry acceptable. */
TEST_F(archive, rejects_relocation_outside_module)
{
	struct pycds_header *h = (void *)self->s.buf;
	uint32_t *relocs = (void *)(self->s.buf + h->relocs_off);
	struct pycds_module *m = (void *)(self->s.buf + h->modules_off);
	uint64_t target = BASE + m[1].span_off[PYCDS_REGION_DATA];

	/* Module 0 pointing into module 1. */
	memcpy(self->s.buf + relocs[0], &target, 8);
	synth_sums(&self->s);
	EXPECT_EQ(-3, full_check(&self->s, NULL));

	/* A slot outside the file. */
	synth_build(&self->s);
	h = (void *)self->s.buf;
	relocs = (void *)(self->s.buf + h->relocs_off);
	relocs[2] = (uint32_t)self->s.size;
	synth_sums(&self->s);
	EXPECT_EQ(-3, full_check(&self->s, NULL));
}

TEST_F(archive, rejects_unknown_image_kind_and_wrong_target)
{
	struct pycds_header *h = (void *)self->s.buf;
	struct pycds_image_reloc *img = (void *)(self->s.buf + h->images_off);
	struct pycds_image_ctx ctx = { .bias = 0 };

	ctx.expect[PYCDS_IMG_TYPE_CODE] = 0x1000;
	ctx.expect[PYCDS_IMG_TYPE_STR] = 0x3000;
	ASSERT_EQ(0, full_check(&self->s, &ctx));
	ctx.expect[PYCDS_IMG_TYPE_CODE] = 0x2000;
	EXPECT_EQ(-3, full_check(&self->s, &ctx));
	ctx.expect[PYCDS_IMG_TYPE_STR] = 0x4000;
	EXPECT_EQ(-4, full_check(&self->s, &ctx));
	ctx.expect[PYCDS_IMG_TYPE_STR] = 0x3000;
	ctx.bias = 0x1000;
	EXPECT_EQ(-4, full_check(&self->s, &ctx));
	ctx.expect[PYCDS_IMG_TYPE_STR] = 0x4000;
	EXPECT_EQ(0, full_check(&self->s, &ctx));

	img[1].kind = PYCDS_IMG_NR_KINDS;
	synth_sums(&self->s);
	EXPECT_EQ(-3, full_check(&self->s, NULL));
}

TEST_F(archive, rejects_intern_fixup_not_matching_pool)
{
	struct pycds_header *h = (void *)self->s.buf;
	struct pycds_fixup *fix = (void *)(self->s.buf + h->interns_off);

	fix[1].arg = 2;		/* slot points at entry 1 */
	synth_sums(&self->s);
	EXPECT_EQ(-3, full_check(&self->s, NULL));
	fix[1].arg = NMOD;	/* past the pool */
	synth_sums(&self->s);
	EXPECT_EQ(-3, full_check(&self->s, NULL));
}

/* Module flags: the package, sourceless and warns bits, and nothing else. */
TEST_F(archive, accepts_known_module_flags_only)
{
	struct pycds_header *h = (void *)self->s.buf;
	struct pycds_module *m = (void *)(self->s.buf + h->modules_off);
	uint32_t bit;

	for (bit = 0; bit < 32; bit++) {
		m[1].flags = 1u << bit;
		synth_sums(&self->s);
		if (m[1].flags & (PYCDS_MOD_PACKAGE | PYCDS_MOD_SOURCELESS |
				  PYCDS_MOD_WARNS)) {
			EXPECT_EQ(0, full_check(&self->s, NULL))
				TH_LOG("flag bit %u refused", bit);
		} else {
			EXPECT_EQ(-2, full_check(&self->s, NULL))
				TH_LOG("flag bit %u accepted", bit);
		}
	}
}

TEST_F(archive, looks_up_every_module)
{
	struct pycds_archive ar = synth_archive(&self->s);

	EXPECT_EQ(0, pycds_index_lookup(&ar, "m0", 2));
	EXPECT_EQ(1, pycds_index_lookup(&ar, "m1", 2));
	EXPECT_EQ(2, pycds_index_lookup(&ar, "m2", 2));
	EXPECT_EQ(-1, pycds_index_lookup(&ar, "m3", 2));
	EXPECT_EQ(-1, pycds_index_lookup(&ar, "m", 1));
	EXPECT_EQ(-1, pycds_index_lookup(&ar, "", 0));
}

FIXTURE(reloc) {
	struct synth s;
};

FIXTURE_VARIANT(reloc) {
	int64_t delta;
	uint64_t bias;
};

FIXTURE_VARIANT_ADD(reloc, at_preferred_base) {
	.delta = 0, .bias = 0,
};

FIXTURE_VARIANT_ADD(reloc, relocated_pie) {
	.delta = 0x10000000, .bias = 0x555555554000,
};

FIXTURE_SETUP(reloc)
{
	synth_build(&self->s);
}

FIXTURE_TEARDOWN(reloc)
{
	free(self->s.buf);
}

TEST_F(reloc, applies_delta_and_bias_to_one_module)
{
	struct pycds_archive ar = synth_archive(&self->s);
	struct pycds_header *h = (void *)self->s.buf;
	uint32_t *relocs = (void *)(self->s.buf + h->relocs_off);
	struct pycds_image_reloc *img = (void *)(self->s.buf + h->images_off);
	uint64_t before[NMOD], ibefore[NMOD], v;
	uint32_t i;

	for (i = 0; i < NMOD; i++) {
		memcpy(&before[i], self->s.buf + relocs[i], 8);
		memcpy(&ibefore[i], self->s.buf + img[i].slot, 8);
	}
	ar.delta = variant->delta;
	pycds_module_relocate(&ar, 1, variant->bias);
	for (i = 0; i < NMOD; i++) {
		memcpy(&v, self->s.buf + relocs[i], 8);
		EXPECT_EQ(before[i] + (i == 1 ? (uint64_t)variant->delta : 0), v);
		memcpy(&v, self->s.buf + img[i].slot, 8);
		EXPECT_EQ(ibefore[i] + (i == 1 ? variant->bias : 0), v);
	}
}

TEST_HARNESS_MAIN
