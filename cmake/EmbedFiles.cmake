# Turns every DIR/*.yaml into a C source defining `const struct ctl_manifest ctl_manifests[]`
# (name, bytes, length; sorted by name; ends with a NULL name), so portcullis-controller
# bootstrap prints exactly what is in deploy/. Run in script mode:
#   cmake -DDIR=<deploy dir> -DOUT=<file.c> -P EmbedFiles.cmake
if(NOT DIR OR NOT OUT)
    message(FATAL_ERROR "usage: cmake -DDIR=<dir> -DOUT=<file.c> -P EmbedFiles.cmake")
endif()
file(GLOB files RELATIVE ${DIR} ${DIR}/*.yaml)
list(SORT files)

set(body "/* Generated from the .yaml files of deploy/ by cmake/EmbedFiles.cmake: do not edit. */\n")
string(APPEND body "#include \"controller.h\"\n\n")
set(table "const struct ctl_manifest ctl_manifests[] = {\n")
set(i 0)
foreach(f IN LISTS files)
    file(READ ${DIR}/${f} hex HEX)
    string(LENGTH "${hex}" hexlen)
    math(EXPR len "${hexlen} / 2")
    # 24 bytes per line keeps the generated file readable in a diff.
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
    string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){24})" "\\1\n    " hex "${hex}")
    string(APPEND body "static const char f${i}[] = {\n    ${hex}0x00};\n")
    string(APPEND table "    {\"${f}\", f${i}, ${len}},\n")
    math(EXPR i "${i} + 1")
endforeach()
string(APPEND table "    {NULL, NULL, 0},\n};\n")

# Written only when different, so an unchanged deploy/ does not rebuild the controller.
set(text "${body}\n${table}")
if(EXISTS ${OUT})
    file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
    file(WRITE ${OUT} "${text}")
endif()
