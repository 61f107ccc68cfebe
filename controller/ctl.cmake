# The ProtectedHost side of portcullis-controller (included from controller/CMakeLists.txt).
# ctl_core is pure (no I/O): validation, the renderer, the desired state and the mesh merge.
add_library(ctl_core STATIC
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_spec.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_render.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_state.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_hosts.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_mesh.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_egress.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_ingress.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_policy.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_workload.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_replicas.c)
target_include_directories(ctl_core PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src)
# pck8s for k8s_parse_time only (ctl_replicas.c reads Lease times).
target_link_libraries(ctl_core PUBLIC pccommon pck8s PkgConfig::JANSSON PkgConfig::YAML)

# ctl_run: the I/O side of `run` (queue, reconciler, admin listener) over the k8s client.
add_library(ctl_run STATIC
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_queue.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_metrics.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_reconcile.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_status.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_events.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_pack.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_global.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_ingress_run.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_sidecar.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_revmirror.c)
target_link_libraries(ctl_run PUBLIC ctl_core pck8s Threads::Threads PkgConfig::ZLIB)

add_executable(portcullis-controller
    ${CMAKE_CURRENT_LIST_DIR}/src/main.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_cli_render.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_revoke.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_run.c)
target_link_libraries(portcullis-controller PRIVATE ctl_run)

if(PORTCULLIS_TESTS)
    foreach(t spec render state hosts mesh replicas egress ingress policy workload)
        pc_unit_test(test_ctl_${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_${t}.c
                     LIBS ctl_core)
    endforeach()
endif()

if(PORTCULLIS_TESTS)
    pc_unit_test(test_ctl_golden
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_golden.c
                         ${CMAKE_CURRENT_LIST_DIR}/src/ctl_cli_render.c
                 LIBS ctl_core)
    target_compile_definitions(test_ctl_golden PRIVATE
                               CTL_SOURCE_ROOT="${CMAKE_CURRENT_LIST_DIR}/..")
endif()

pc_fuzz_target(fuzz_render SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_render.c LIBS ctl_core)
pc_fuzz_target(fuzz_mesh SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_mesh.c LIBS ctl_core)
pc_fuzz_target(fuzz_ingress SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_ingress.c LIBS ctl_core)

if(PORTCULLIS_TESTS)
    pc_unit_test(test_ctl_revoke SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_revoke.c
                                         ${CMAKE_CURRENT_LIST_DIR}/src/ctl_revoke.c
                 LIBS ctl_core pck8s)
endif()
pc_fuzz_target(fuzz_policy SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_policy.c LIBS ctl_core)

if(PORTCULLIS_TESTS)
    pc_unit_test(test_ctl_queue SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_queue.c
                 LIBS ctl_run)
    pc_unit_test(test_ctl_events SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_events.c
                 LIBS ctl_run)
    pc_unit_test(test_ctl_pack SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_pack.c
                 LIBS ctl_run)
    pc_unit_test(test_ctl_sidecar SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_sidecar.c
                 LIBS ctl_run)
endif()

# The compact authd entry must mean what the full one means: parsed with authd's own parser.
if(PORTCULLIS_TESTS AND TARGET authd_core)
    pc_unit_test(test_ctl_compact SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/test_ctl_compact.c
                 LIBS ctl_core authd_core)
endif()
