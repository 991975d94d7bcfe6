# `cpack -G DEB` in the build directory makes a Debian package of the kvfs
# binary, depending on the Debian 12 runtime libraries it links.
install(TARGETS kvfs RUNTIME DESTINATION bin)
set(CPACK_PACKAGE_NAME "kvfs")
set(CPACK_PACKAGE_CONTACT "kvfs developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "FUSE filesystem that packs KV-cache blocks into extents on shared storage")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "librocksdb7.8, libxxhash0, libfuse3-3, fuse3, libabsl20220623")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
include(CPack)
