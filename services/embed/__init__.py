"""Township portal embedding (group tongyuan-embed): 重大民生信息 fragments, pages and feeds per township and county, and the registry of township portals."""
