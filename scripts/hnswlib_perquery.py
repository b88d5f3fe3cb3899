#!/usr/bin/env python3
"""hnswlib in-process, one query per call from Python threads (the way a
client asks a server): recall@10, QPS and p99 per ef with 1 and 2 threads.

    scripts/hnswlib_perquery.py DATA_DIR NAME   (base/queries.fvecs, gt.ivecs; cosine)
"""
import sys, time, threading, numpy as np, hnswlib
def xvecs(p, dt):
    raw=np.fromfile(p,dtype=np.int32); d=raw[0]; return raw.reshape(-1,d+1)[:,1:].view(dt).copy()
data=sys.argv[1]; name=sys.argv[2]
base=xvecs(data+'/base.fvecs',np.float32); q=xvecs(data+'/queries.fvecs',np.float32); gt=xvecs(data+'/gt.ivecs',np.int32)[:,:10]
idx=hnswlib.Index(space='cosine',dim=base.shape[1]); idx.init_index(max_elements=len(base),M=16,ef_construction=100); idx.set_num_threads(2); idx.add_items(base,np.arange(len(base))); idx.set_num_threads(1)
for ef in (24,32,48):
    idx.set_ef(ef)
    labels,_=idx.knn_query(q,k=10)
    rec=np.mean([len(set(labels[i])&set(gt[i]))/10 for i in range(len(q))])
    for nthreads in (1,2):
        stop=time.time()+4; counts=[0]*nthreads; lat=[]
        def worker(t):
            i=t
            while time.time()<stop:
                t0=time.perf_counter(); idx.knn_query(q[i%len(q)],k=10); lat.append(time.perf_counter()-t0); counts[t]+=1; i+=nthreads
        th=[threading.Thread(target=worker,args=(t,)) for t in range(nthreads)]
        [x.start() for x in th]; [x.join() for x in th]
        lat.sort()
        print(f'{name} hnswlib per-query python ef={ef} recall={rec:.4f} threads={nthreads} qps={sum(counts)/4:.0f} p99_us={lat[int(len(lat)*.99)]*1e6:.0f}')
