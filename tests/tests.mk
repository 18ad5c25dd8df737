# tests/: the check suites add themselves to check_PROGRAMS and TESTS in
# their module's .mk file; this file holds the cross-cutting parts.
TESTS      += tests/layering.sh
EXTRA_DIST += tests/layering.sh tests/data

# Benchmarks: built and run by 'make bench' only, never by 'make check'
# (a test never asserts a timing).  Modules add to BENCH_TESTS and
# EXTRA_PROGRAMS.
bench: $(BENCH_TESTS)
	@for b in $(BENCH_TESTS); do echo "== $$b"; ./$$b || exit 1; done

# Conformance: the large reference sets in ../shared/testdata (CI has them
# beside the clone; a user's clone does not).  Programs are built by
# 'make check' (they are check_PROGRAMS) and run here with the full data.
conformance: $(CONFORMANCE_TESTS)
	@if [ ! -d '$(abs_top_srcdir)/../shared/testdata' ]; then \
	    echo "conformance: SKIPPED: $(abs_top_srcdir)/../shared/testdata not found"; \
	    exit 0; \
	fi; \
	$(AM_TESTS_ENVIRONMENT) fail=0; \
	for t in $(CONFORMANCE_TESTS); do \
	    echo "== $$t"; ./$$t || fail=1; \
	done; \
	exit $$fail
.PHONY: bench conformance
