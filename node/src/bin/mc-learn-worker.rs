//! `mc-learn-worker`: the process a node trains models in (see
//! `mc_node::worker`). It reads jobs on standard input and answers on
//! standard output until the node closes the pipe; it is the only binary of
//! this package that links libtorch.

fn main() -> std::process::ExitCode {
    mc_learn::worker::main()
}
