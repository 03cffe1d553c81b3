// SPDX-License-Identifier: MIT
/*
 * The archive format's layout as include/pycds/archive.h defines it, as
 * JSON, for the Python tests (tests/py/pycdslib.py): field offsets and
 * sizes, region numbers and the format version.  The tests read the format
 * through this, never through a copy of their own.
 */
#include <stddef.h>
#include <stdio.h>

#include "pycds/archive.h"

#define F(type, field)                                                     \
	printf("%s\"%s\": [%zu, %zu]", first ? "" : ", ", #field,           \
	       offsetof(type, field), sizeof(((type *)0)->field)),          \
		first = 0

int main(void)
{
	int first;

	printf("{\"version\": %u, \"header_size\": %zu,\n",
	       (unsigned int)PYCDS_FORMAT_VERSION, sizeof(struct pycds_header));
	printf(" \"regions\": {\"code\": %d, \"data\": %d, \"cold\": %d, "
	       "\"idle\": %d, \"names\": %d, \"nr\": %d, \"nr_all\": %d},\n",
	       PYCDS_REGION_CODE, PYCDS_REGION_DATA, PYCDS_REGION_COLD,
	       PYCDS_REGION_IDLE, PYCDS_REGION_NAMES, PYCDS_NR_REGIONS,
	       PYCDS_NR_ALL_REGIONS);
	printf(" \"header\": {");
	first = 1;
#define H(f) F(struct pycds_header, f)
	H(magic); H(version); H(header_size); H(file_size); H(preferred_base);
	H(interp.hexversion); H(interp.pyc_magic); H(interp.cache_tag);
	H(interp.abiflags); H(interp.build_id); H(interp.build_id_len);
	H(interp.optimize); H(interp.layout); H(interp.runtime_addr);
	H(regions); H(names_index_off); H(nr_names); H(flags); H(names_found_off);
	H(modules_off);
	H(nr_modules); H(nr_buckets); H(buckets_off); H(names); H(relocs_off);
	H(nr_relocs); H(images_off); H(nr_images); H(interns_off);
	H(nr_interns); H(fsets_off); H(nr_fsets); H(meta_checksum);
	H(header_checksum); H(hash_flags); H(hash_seed); H(hash_probe);
	H(versions_first); H(versions_count); H(on_checksum); H(on_base);
	H(on_size); H(recipe_off); H(recipe_size);
	printf("},\n \"module\": {\"size\": %zu, \"fields\": {",
	       sizeof(struct pycds_module));
	first = 1;
#define M(f) F(struct pycds_module, f)
	M(name_off); M(name_len); M(origin_off); M(origin_len); M(flags);
	M(src_mtime); M(src_size); M(root); M(span_off); M(span_size);
	M(reloc_first); M(reloc_count); M(image_first); M(image_count);
	M(intern_first); M(intern_count); M(fset_first); M(fset_count);
	M(checksum);
	printf("}},\n \"name\": {\"size\": %zu, \"fields\": {",
	       sizeof(struct pycds_name));
	first = 1;
	F(struct pycds_name, off); F(struct pycds_name, size);
	F(struct pycds_name, hash);
	printf("}},\n \"fixup\": {\"size\": %zu, \"fields\": {",
	       sizeof(struct pycds_fixup));
	first = 1;
	F(struct pycds_fixup, slot); F(struct pycds_fixup, arg);
	printf("}}}\n");
	return 0;
}
