# The ProtectedHost side of portcullis-controller (included from controller/CMakeLists.txt).
# ctl_core is pure (no I/O): validation, the renderer, the desired state and the mesh merge.
add_library(ctl_core STATIC
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_spec.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_render.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_state.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_mesh.c)
target_include_directories(ctl_core PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src)
target_link_libraries(ctl_core PUBLIC pccommon PkgConfig::JANSSON PkgConfig::YAML)

add_executable(portcullis-controller
    ${CMAKE_CURRENT_LIST_DIR}/src/main.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_cli_render.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ctl_run.c)
target_link_libraries(portcullis-controller PRIVATE ctl_core)
