# `portcullis-controller bootstrap`: the install manifests of deploy/, embedded at build time
# (included from controller/CMakeLists.txt after ctl.cmake, which defines the executable).
file(GLOB pc_deploy_files CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/deploy/*.yaml)
set(pc_manifests_c ${CMAKE_CURRENT_BINARY_DIR}/deploy_manifests.c)
add_custom_command(
    OUTPUT ${pc_manifests_c}
    COMMAND ${CMAKE_COMMAND} -DDIR=${PROJECT_SOURCE_DIR}/deploy -DOUT=${pc_manifests_c}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    DEPENDS ${pc_deploy_files} ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    COMMENT "Embedding deploy/*.yaml for portcullis-controller bootstrap"
    VERBATIM)

add_library(ctl_bootstrap STATIC ${CMAKE_CURRENT_LIST_DIR}/src/bootstrap.c ${pc_manifests_c})
target_include_directories(ctl_bootstrap PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src)
target_link_libraries(ctl_bootstrap PUBLIC pccommon PkgConfig::JANSSON PkgConfig::YAML)
target_link_libraries(portcullis-controller PRIVATE ctl_bootstrap)

if(PORTCULLIS_TESTS)
    pc_unit_test(test_bootstrap SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_bootstrap.c
                 LIBS ctl_bootstrap)
endif()

# deploy/ keeps a copy of the CRD (kustomize refuses ../crds); it must not drift.
if(PORTCULLIS_TESTS)
    add_test(NAME deploy_crd_in_sync COMMAND ${PROJECT_SOURCE_DIR}/scripts/sync-deploy.sh --check)
    set_tests_properties(deploy_crd_in_sync PROPERTIES LABELS unit)
endif()
