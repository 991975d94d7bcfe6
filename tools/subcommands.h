// Entry points of the kvfs subcommands; each parses its own arguments
// (argv[0] is the subcommand name) and returns the process exit code.
#pragma once

namespace kvfs {

int RunDemo(int argc, char** argv);
int RunMount(int argc, char** argv);
int RunUmount(int argc, char** argv);
int RunBench(int argc, char** argv);
int RunEvict(int argc, char** argv);
int RunDu(int argc, char** argv);
int RunStat(int argc, char** argv);
int RunFsck(int argc, char** argv);

}  // namespace kvfs
