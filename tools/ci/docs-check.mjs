console.log("no generated docs yet")
