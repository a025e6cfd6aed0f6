/** The throw-away etcd the tests start (it is also what `pvio cluster` runs): see EtcdProcess.ts. */
export { EtcdServer, etcdBinary } from '../../hypervisor-sim/hostd/EtcdProcess.js';
