// SPDX-License-Identifier: MIT
/*
 * How an archive stands against the host as it is now: does the ELF file
 * that held the interpreter's types when it was built still carry the
 * same build ID, and how many of its modules' sources changed since.
 * For pycds inspect, pycds-loader --status and pycds-top's metrics: an
 * upgrade of the interpreter or of a package shows here before processes
 * fall back to stock.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

void pycds_recipe_each(const struct pycds_archive *ar,
		       void (*fn)(const char *key, size_t klen,
				  const char *value, void *arg),
		       void *arg)
{
	const struct pycds_header *h = ar->hdr;
	const char *p, *end;

	if (!h->recipe_size)
		return;
	p = (const char *)ar->base + h->names.off + h->recipe_off;
	end = p + h->recipe_size;
	while (p < end) {
		size_t len = strlen(p);	/* the header check saw the last NUL */
		const char *eq = memchr(p, '=', len);

		if (eq)
			fn(p, (size_t)(eq - p), eq + 1, arg);
		p += len + 1;
	}
}

struct find {
	const char *key;
	const char *value;
};

static void find_key(const char *key, size_t klen, const char *value,
		     void *arg)
{
	struct find *f = arg;

	if (!f->value && strlen(f->key) == klen && !memcmp(key, f->key, klen))
		f->value = value;
}

const char *pycds_recipe_get(const struct pycds_archive *ar, const char *key)
{
	struct find f = { .key = key };

	pycds_recipe_each(ar, find_key, &f);
	return f.value;
}

int pycds_module_fresh(const struct pycds_archive *ar,
		       const struct pycds_module *m)
{
	char path[4096];
	size_t len;
	const char *o = pycds_module_origin(ar, m, &len);
	struct stat st;

	if (len >= sizeof(path))
		return 0;
	memcpy(path, o, len);
	path[len] = '\0';
	if (stat(path, &st))
		return 0;
	return st.st_mtim.tv_sec == m->src_mtime &&
	       (uint64_t)st.st_size == m->src_size;
}

/* The GNU build ID in the notes of the 64-bit ELF file @fd. */
static int elf_build_id(int fd, uint8_t *id, uint32_t *idlen)
{
	Elf64_Ehdr eh;
	unsigned int i;

	if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
		return -ENOEXEC;
	for (i = 0; i < eh.e_phnum; i++) {
		uint8_t notes[4096];
		Elf64_Phdr ph;
		size_t len, at = 0;

		if (pread(fd, &ph, sizeof(ph),
			  (off_t)(eh.e_phoff + i * sizeof(ph))) != sizeof(ph))
			return -ENOEXEC;
		if (ph.p_type != PT_NOTE)
			continue;
		len = ph.p_filesz < sizeof(notes) ? ph.p_filesz : sizeof(notes);
		if (pread(fd, notes, len, (off_t)ph.p_offset) != (ssize_t)len)
			return -ENOEXEC;
		while (at + sizeof(Elf64_Nhdr) <= len) {
			const Elf64_Nhdr *n = (const void *)(notes + at);
			size_t name = (n->n_namesz + 3) & ~(size_t)3;
			size_t desc = (n->n_descsz + 3) & ~(size_t)3;

			if (sizeof(*n) + name + desc > len - at)
				break;
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
			    !memcmp(notes + at + sizeof(*n), "GNU", 4) &&
			    n->n_descsz <= 32) {
				memcpy(id, notes + at + sizeof(*n) + name,
				       n->n_descsz);
				*idlen = n->n_descsz;
				return 0;
			}
			at += sizeof(*n) + name + desc;
		}
	}
	return -ENOENT;
}

int pycds_health(const struct pycds_archive *ar, struct pycds_health *out)
{
	const struct pycds_header *h = ar->hdr;
	const char *elf = pycds_recipe_get(ar, "elf");
	uint8_t id[32];
	uint32_t idlen = 0, i;
	int fd, r;

	memset(out, 0, sizeof(*out));
	out->modules = h->nr_modules;
	for (i = 0; i < h->nr_modules; i++)
		out->stale += !pycds_module_fresh(ar, pycds_module_get(ar, i));
	if (!elf) {
		out->fits = -1;
		snprintf(out->why, sizeof(out->why),
			 "its recipe names no interpreter file");
		return 0;
	}
	snprintf(out->elf, sizeof(out->elf), "%s", elf);
	fd = open(elf, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(out->why, sizeof(out->why), "%s: %s", elf,
			 strerror(errno));
		return 0;
	}
	r = elf_build_id(fd, id, &idlen);
	close(fd);
	if (r) {
		snprintf(out->why, sizeof(out->why), "%s: %s", elf,
			 r == -ENOENT ? "has no build ID"
				      : "not a 64-bit ELF file");
		return 0;
	}
	if (idlen != h->interp.build_id_len ||
	    memcmp(id, h->interp.build_id, idlen)) {
		snprintf(out->why, sizeof(out->why),
			 "%s: another build (build ID differs): the interpreter was upgraded or rebuilt",
			 elf);
		return 0;
	}
	out->fits = 1;
	snprintf(out->why, sizeof(out->why), "%s: same build ID", elf);
	return 0;
}

int pycds_health_file(const char *path, struct pycds_health *out)
{
	struct pycds_archive ar = { 0 };
	char err[PYCDS_ERR_LEN];
	struct stat st;
	void *p;
	int fd;

	memset(out, 0, sizeof(*out));
	out->fits = -1;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(out->why, sizeof(out->why), "cannot read it: %s",
			 strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || !st.st_size) {
		snprintf(out->why, sizeof(out->why),
			 "not a regular, non-empty file");
		goto fail;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		snprintf(out->why, sizeof(out->why), "cannot map it: %s",
			 strerror(errno));
		goto fail;
	}
	close(fd);
	ar.base = p;
	ar.size = (size_t)st.st_size;
	ar.hdr = p;
	if (pycds_header_check(p, ar.size, err, sizeof(err)) ||
	    pycds_meta_check(&ar, err, sizeof(err))) {
		snprintf(out->why, sizeof(out->why), "%s", err);
		munmap(p, ar.size);
		return -1;
	}
	pycds_health(&ar, out);
	munmap(p, ar.size);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}
